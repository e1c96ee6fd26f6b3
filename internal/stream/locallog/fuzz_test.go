package locallog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

type frameRec struct{ key, data []byte }

// readFrames reads every frame of a segment image with a segmentReader
// and returns the records (copied), the length of the valid prefix and the
// error that ended it (nil for a clean end).
func readFrames(b []byte) ([]frameRec, int64, error) {
	sr := newSegmentReader(bytes.NewReader(b), int64(len(b)))
	var recs []frameRec
	for {
		key, data, _, err := sr.next()
		if err == io.EOF {
			return recs, sr.pos, nil
		}
		if err != nil {
			return recs, sr.pos, err
		}
		recs = append(recs, frameRec{bytes.Clone(key), bytes.Clone(data)})
	}
}

func segmentImage(recs ...frameRec) []byte {
	var b []byte
	for _, r := range recs {
		b = appendFrame(b, r.key, r.data)
	}
	return b
}

func fuzzSeeds() [][]byte {
	one := segmentImage(frameRec{[]byte("public.t.1"), []byte(`{"id":1}`)})
	many := segmentImage(
		frameRec{[]byte("a"), []byte("1")},
		frameRec{nil, nil},
		frameRec{[]byte("b"), bytes.Repeat([]byte{0xff}, 300)},
		frameRec{[]byte("c"), []byte("")},
	)
	flipped := bytes.Clone(many)
	flipped[len(one)+3] ^= 1
	huge := binary.LittleEndian.AppendUint32(nil, maxFrameBody+1)
	huge = append(huge, make([]byte, 12)...)
	bigLen := binary.LittleEndian.AppendUint32(bytes.Clone(one), 1<<20) // claims 1 MiB, has none
	return [][]byte{nil, one, many, many[:len(many)-1], many[:5], flipped, make([]byte, 16), huge, bigLen}
}

// checkSegmentReader is the property FuzzSegmentReader checks: no panic;
// the valid prefix is within the input and ends only in a torn or corrupt
// frame; re-reading the valid prefix gives the same records and a clean
// end; encoding those records again gives the prefix byte for byte; and a
// cut of the input reads as a prefix of the records.
func checkSegmentReader(t *testing.T, b []byte) {
	recs, valid, err := readFrames(b)
	if valid < 0 || valid > int64(len(b)) {
		t.Fatalf("valid prefix %d outside [0, %d]", valid, len(b))
	}
	if err == nil && valid != int64(len(b)) {
		t.Fatalf("clean end at %d of %d bytes", valid, len(b))
	}
	if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("error %v is neither torn nor corrupt", err)
	}
	again, valid2, err2 := readFrames(b[:valid])
	if err2 != nil || valid2 != valid || len(again) != len(recs) {
		t.Fatalf("re-reading the valid prefix: %d records, %d bytes, %v; first read %d records, %d bytes", len(again), valid2, err2, len(recs), valid)
	}
	if enc := segmentImage(recs...); !bytes.Equal(enc, b[:valid]) {
		t.Fatal("re-encoding the records does not give the valid prefix")
	}
	cut := len(b) / 2
	part, _, _ := readFrames(b[:cut])
	if len(part) > len(recs) {
		t.Fatalf("a cut input gave %d records, the whole %d", len(part), len(recs))
	}
	for i := range part {
		if !bytes.Equal(part[i].key, recs[i].key) || !bytes.Equal(part[i].data, recs[i].data) {
			t.Fatalf("record %d differs after a cut", i)
		}
	}
	// decodeFrame, used by Read, agrees with the reader on every frame.
	for pos, i := 0, 0; i < len(recs); i++ {
		key, data, n, err := decodeFrame(b[pos:valid])
		if err != nil || !bytes.Equal(key, recs[i].key) || !bytes.Equal(data, recs[i].data) {
			t.Fatalf("decodeFrame disagrees at record %d: %v", i, err)
		}
		pos += n
	}
}

func FuzzSegmentReader(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(checkSegmentReader)
}

// TestSegmentReaderRandom runs the fuzz property briefly over random
// mutations of the seeds on every go test, without -fuzz.
func TestSegmentReaderRandom(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	seeds := fuzzSeeds()
	for range 5000 {
		b := bytes.Clone(seeds[rng.IntN(len(seeds))])
		for range rng.IntN(4) {
			switch op := rng.IntN(3); {
			case op == 0 && len(b) > 0:
				b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
			case op == 1 && len(b) > 0:
				b = b[:rng.IntN(len(b))]
			default:
				b = append(b, segmentImage(frameRec{[]byte("k"), make([]byte, rng.IntN(40))})...)
			}
		}
		checkSegmentReader(t, b)
	}
}
