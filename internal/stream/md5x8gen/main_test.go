package main

import (
	"bytes"
	"os"
	"testing"
)

// TestGeneratedFileIsCurrent fails when ../md5x8_amd64.s is not what the
// generator writes (edited by hand, or the generator changed without `go
// generate ./internal/stream`). That the assembly computes MD5 is checked
// by the stream package's TestShardsForMatchesShardFor.
func TestGeneratedFileIsCurrent(t *testing.T) {
	have, err := os.ReadFile("../md5x8_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	if want := generate(); !bytes.Equal(have, want) {
		t.Fatal("internal/stream/md5x8_amd64.s differs from md5x8gen's output: run `go generate ./internal/stream`")
	}
}

// TestConstants checks the computed step constants against values quoted
// in RFC 1321 (T[1], T[2], T[33], T[64]).
func TestConstants(t *testing.T) {
	c := k()
	for i, want := range map[int]uint32{0: 0xd76aa478, 1: 0xe8c7b756, 32: 0xfffa3942, 63: 0xeb86d391} {
		if c[i] != want {
			t.Errorf("K[%d] = %#08x, want %#08x", i, c[i], want)
		}
	}
}
