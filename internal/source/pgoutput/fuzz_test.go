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
	// One Decoder across inputs, released now and then: it must decode
	// exactly as Decode whatever memory it reuses.
	var dec Decoder
	var held []Message // decoded since the last Release: must stay intact
	var heldWant [][]byte
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		// Tuples alias their input, and the fuzzer reuses b: decode a copy.
		dm, derr := dec.Decode(append([]byte(nil), b...))
		if (err == nil) != (derr == nil) || (err != nil && err.Error() != derr.Error()) {
			t.Fatalf("Decoder.Decode error %v, Decode error %v", derr, err)
		}
		if err == nil && !reflect.DeepEqual(dm, m) {
			t.Fatalf("Decoder.Decode %s, Decode %s", dump(dm), dump(m))
		}
		if err == nil {
			// The structs are reused by the next Decode; copy them, keeping
			// the Decoder's tuples, which must not change until Release.
			var cp Message
			switch v := dm.(type) {
			case *Insert:
				c := *v
				cp = &c
			case *Update:
				c := *v
				cp = &c
			case *Delete:
				c := *v
				cp = &c
			}
			if cp != nil {
				held = append(held, cp)
				heldWant = append(heldWant, encode(m))
			}
		}
		for i, hm := range held {
			if got := encode(hm); !bytes.Equal(got, heldWant[i]) {
				t.Fatalf("a tuple decoded earlier changed before Release: %.200x, was %.200x", got, heldWant[i])
			}
		}
		if len(held) > 20 {
			dec.Release()
			held, heldWant = held[:0], heldWant[:0]
		}
		if x, err := ParseXLogData(b); err == nil {
			fr, ferr := ParseFrame(b)
			if ferr != nil || !reflect.DeepEqual(fr, &x) {
				t.Fatalf("ParseXLogData %#v, ParseFrame %#v (%v)", x, fr, ferr)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("ParseXLogData error %v does not wrap ErrMalformed", err)
		}
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
