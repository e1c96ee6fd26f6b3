//go:build amd64 && !purego

package stream

import "golang.org/x/sys/cpu"

//go:generate go run ./md5x8gen -out md5x8_amd64.s

// md5x8 computes eight one-block MD5 digests at once with AVX2
// (md5x8_amd64.s, written by ./md5x8gen from RFC 1321's steps).
//
//go:noescape
func md5x8(dig *[4][8]uint32, m *[16][8]uint32)

var haveMD5x8 = cpu.X86.HasAVX2
