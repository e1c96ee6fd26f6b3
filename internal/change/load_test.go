package change

import (
	"reflect"
	"testing"
)

// TestCodecLoad checks that a snapshot row (OpLoad) round-trips through the
// stream record codec.
func TestCodecLoad(t *testing.T) {
	c := sample()
	c.Op, c.Old, c.XID, c.Pos = OpLoad, nil, 0, 3
	c.New[3] = Datum{Text, []byte("note")}
	got, err := Decode(AppendEncode(nil, c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip:\n got  %+v\n want %+v", got, c)
	}
	if !OpLoad.Valid() || OpLoad.String() != "load" {
		t.Fatalf("OpLoad: valid %v, string %q", OpLoad.Valid(), OpLoad.String())
	}
}
