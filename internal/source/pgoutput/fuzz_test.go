package pgoutput

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary bytes to Decode and, framed as XLogData, to
// ParseFrame. Properties: no panic; errors wrap ErrMalformed; a decoded
// message re-encodes to exactly the input (decoding is strict and
// canonical); every strict prefix of a valid message is rejected.
func FuzzDecode(f *testing.F) {
	for _, b := range captured(f) {
		f.Add(b)
	}
	for _, m := range handBuiltSeeds() {
		f.Add(encode(m))
	}
	f.Add([]byte{})
	f.Add(encodeFrame(&Keepalive{ServerEnd: 1, SendTime: time.Unix(0, 0), ReplyRequested: true}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
		} else {
			if got := encode(m); !bytes.Equal(got, b) {
				t.Fatalf("round trip: decoded %s, re-encoded %x, input %x", dump(m), got, b)
			}
			for n := len(b) - 1; n >= 0 && n >= len(b)-8; n-- {
				if _, err := Decode(b[:n]); err == nil {
					t.Fatalf("prefix of %d bytes decoded", n)
				}
			}
		}

		// The same bytes as a whole frame, and wrapped in an XLogData frame.
		if fr, err := ParseFrame(b); err == nil {
			// Not byte-exact: any non-zero reply flag means true.
			again, err := ParseFrame(encodeFrame(fr))
			if err != nil || !reflect.DeepEqual(again, fr) {
				t.Fatalf("frame round trip: %#v vs %#v (%v)", again, fr, err)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("frame error %v does not wrap ErrMalformed", err)
		}
		frame := encodeFrame(&XLogData{WALStart: 1, ServerEnd: 2, SendTime: time.Unix(1, 0), Data: b})
		fr, err := ParseFrame(frame)
		if err != nil {
			t.Fatalf("XLogData frame: %v", err)
		}
		if x := fr.(*XLogData); !bytes.Equal(x.Data, b) {
			t.Fatalf("XLogData payload %x, want %x", x.Data, b)
		}
	})
}
