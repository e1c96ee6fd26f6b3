package datafile

import (
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/silt-dev/silt/internal/delta"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestPartitionTimeZone checks ParsePartitionValueIn: zone-less timestamp
// values are wall clocks in the given zone (nil = UTC); values with Z or an
// offset, and timestamp_ntz values, do not depend on it.
func TestPartitionTimeZone(t *testing.T) {
	la := mustLoc(t, "America/Los_Angeles")
	utc := func(s string) arrow.Timestamp {
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return arrow.Timestamp(ts.UnixMicro())
	}
	cases := []struct {
		typ  delta.DataType
		in   string
		loc  *time.Location
		want string // RFC 3339 instant (timestamp_ntz: wall clock as UTC)
	}{
		// The corpus value (golden/data-reader-partition-values).
		{delta.Timestamp, "2021-09-08 11:11:11", la, "2021-09-08T18:11:11Z"},
		{delta.Timestamp, "2021-09-08 11:11:11", nil, "2021-09-08T11:11:11Z"},
		{delta.Timestamp, "2021-09-08 11:11:11", time.UTC, "2021-09-08T11:11:11Z"},
		{delta.Timestamp, "2021-09-08T11:11:11.123456", la, "2021-09-08T18:11:11.123456Z"},
		{delta.Timestamp, "2021-01-08 11:11:11", la, "2021-01-08T19:11:11Z"}, // PST
		{delta.Timestamp, "2021-09-08", la, "2021-09-08T07:00:00Z"},
		// With Z or an offset: the zone is unaffected.
		{delta.Timestamp, "2021-09-08T11:11:11Z", la, "2021-09-08T11:11:11Z"},
		{delta.Timestamp, "2021-09-08T11:11:11.000001Z", la, "2021-09-08T11:11:11.000001Z"},
		{delta.Timestamp, "2021-09-08 11:11:11+02:00", la, "2021-09-08T09:11:11Z"},
		{delta.Timestamp, "2021-09-08T11:11:11-07:00", nil, "2021-09-08T18:11:11Z"},
		// timestamp_ntz keeps the wall clock.
		{delta.TimestampNTZ, "2021-09-08 11:11:11", la, "2021-09-08T11:11:11Z"},
		// DST, as java.time: the ambiguous 01:30 of 2021-11-07 takes the
		// earlier offset (PDT); 02:30 of 2021-03-14 does not exist and moves
		// forward by the gap (03:30 PDT).
		{delta.Timestamp, "2021-11-07 01:30:00", la, "2021-11-07T08:30:00Z"},
		{delta.Timestamp, "2021-11-07 00:59:59", la, "2021-11-07T07:59:59Z"},
		{delta.Timestamp, "2021-11-07 02:00:00", la, "2021-11-07T10:00:00Z"},
		{delta.Timestamp, "2021-03-14 02:30:00", la, "2021-03-14T10:30:00Z"},
		{delta.Timestamp, "2021-03-14 01:59:59", la, "2021-03-14T09:59:59Z"},
		{delta.Timestamp, "2021-03-14 03:00:00", la, "2021-03-14T10:00:00Z"},
		// A zone east of UTC with a gap (Europe/Berlin, 2021-03-28 02:30).
		{delta.Timestamp, "2021-03-28 02:30:00", mustLoc(t, "Europe/Berlin"), "2021-03-28T01:30:00Z"},
		{delta.Timestamp, "2021-10-31 02:30:00", mustLoc(t, "Europe/Berlin"), "2021-10-31T00:30:00Z"},
	}
	for _, c := range cases {
		in := c.in
		v, err := ParsePartitionValueIn(c.typ, &in, c.loc)
		if err != nil {
			t.Errorf("%s %q in %v: %v", c.typ.TypeName(), c.in, c.loc, err)
			continue
		}
		if got, want := v.(arrow.Timestamp), utc(c.want); got != want {
			t.Errorf("%s %q in %v = %s, want %s", c.typ.TypeName(), c.in, c.loc,
				time.UnixMicro(int64(got)).UTC().Format(time.RFC3339Nano), c.want)
		}
	}
	// ParsePartitionValue is the UTC form.
	in := "2021-09-08 11:11:11"
	if v, err := ParsePartitionValue(delta.Timestamp, &in); err != nil || v.(arrow.Timestamp) != utc("2021-09-08T11:11:11Z") {
		t.Errorf("ParsePartitionValue(%q) = %v, %v", in, v, err)
	}
}

// TestReadPartitionTimeZone checks that Read applies
// TableInfo.PartitionTimeZone to the partition values of an add.
func TestReadPartitionTimeZone(t *testing.T) {
	mem := checkedAlloc(t)
	st := newStore(t)
	s := mustSchema(t, fld("id", "integer", true), fld("pts", "timestamp", true), fld("pz", "timestamp", true))
	rec := recFromJSON(t, mem, s, `[{"id":1,"pts":"2021-09-08T11:11:11Z","pz":"2021-09-08T11:11:11Z"}]`)
	defer rec.Release()
	ti := TableInfo{Schema: s, PartitionColumns: []string{"pts", "pz"}, Allocator: mem}
	adds, err := Write(ctx, st, ti, rec, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(adds) != 1 {
		t.Fatalf("%d adds", len(adds))
	}
	// As a legacy (Spark) writer would have written them: pts without a
	// zone, pz with Z.
	legacy, iso := "2021-09-08 11:11:11", "2021-09-08T11:11:11.000000Z"
	adds[0].PartitionValues["pts"] = &legacy
	adds[0].PartitionValues["pz"] = &iso

	got := readAll(t, st, ti, adds)
	if len(got) != 1 || !strings.Contains(got[0], `"pts":"2021-09-08T11:11:11Z"`) || !strings.Contains(got[0], `"pz":"2021-09-08T11:11:11Z"`) {
		t.Errorf("UTC read: %v", got)
	}
	ti.PartitionTimeZone = mustLoc(t, "America/Los_Angeles")
	got = readAll(t, st, ti, adds)
	if len(got) != 1 || !strings.Contains(got[0], `"pts":"2021-09-08T18:11:11Z"`) || !strings.Contains(got[0], `"pz":"2021-09-08T11:11:11Z"`) {
		t.Errorf("America/Los_Angeles read: %v", got)
	}
}
