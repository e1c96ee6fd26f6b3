package datafile

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/parquet/compress"
)

// TestPageZstd: Parquet pages are compressed by pageZstd (1 MiB window),
// which round-trips through arrow-go's decoder and compresses a page as
// well as arrow-go's default codec.
func TestPageZstd(t *testing.T) {
	c, err := compress.GetCodec(compress.Codecs.Zstd)
	if err != nil {
		t.Fatal(err)
	}
	pz, ok := c.(pageZstd)
	if !ok {
		t.Fatalf("zstd codec is %T, want pageZstd", c)
	}
	var page bytes.Buffer
	for i := 0; page.Len() < 1<<20; i++ {
		fmt.Fprintf(&page, "value number %d|", i*7919%100003)
	}
	src := page.Bytes()[:1<<20]
	for _, level := range []int{compress.DefaultCompressionLevel, 1, 3} {
		ours := pz.EncodeLevel(nil, src, level)
		theirs := pz.Codec.EncodeLevel(nil, src, level)
		back, err := compress.Decode(pz.Codec, nil, ours)
		if err != nil || !bytes.Equal(back, src) {
			t.Fatalf("level %d: round trip failed: %v", level, err)
		}
		if float64(len(ours)) > 1.01*float64(len(theirs)) {
			t.Errorf("level %d: %d bytes, arrow-go's codec %d", level, len(ours), len(theirs))
		}
		t.Logf("level %d: %d -> %d bytes (arrow-go's default codec %d)", level, len(src), len(ours), len(theirs))
	}
}
