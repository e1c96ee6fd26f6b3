package bronze

import (
	"strings"
	"testing"

	"github.com/silt-dev/silt/internal/change"
)

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{
		"tag_id": "tag_id", "Value": "Value", "flow rate (m3/h)": "flow_rate__m3/h_", "a,b;c{d}e=f\tg\nh": "a_b_c_d_e_f_g_h",
	} {
		if got := FieldName(in); got != want {
			t.Errorf("FieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEvolveNormalisesAndRejectsCaseTwins(t *testing.T) {
	rel := &change.Relation{Table: change.TableID{Schema: "s", Name: "t"}, Columns: []change.Column{
		{Name: "id", TypeOID: 23, Key: true}, {Name: "flow rate", TypeOID: 701},
	}}
	s, _, _, err := evolve(nil, []*change.Change{{Rel: rel}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := s.Field("flow_rate")
	if f == nil || f.Metadata["silt.sourceName"] != "flow rate" {
		t.Fatalf("normalised field missing or without source name: %+v", f)
	}
	twins := &change.Relation{Table: rel.Table, Columns: []change.Column{{Name: "id", TypeOID: 23, Key: true}, {Name: "ID", TypeOID: 23}}}
	if _, _, _, err := evolve(nil, []*change.Change{{Rel: twins}}, nil); err == nil || !strings.Contains(err.Error(), "differ only in case") {
		t.Fatalf("case twins: %v", err)
	}
}

func TestTrimPartitions(t *testing.T) {
	rel := &change.Relation{Table: change.TableID{Schema: "s", Name: "t"}, Columns: []change.Column{{Name: "id", TypeOID: 23, Key: true}}}
	s, _, parts, err := evolve(nil, []*change.Change{{Rel: rel}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for by, want := range map[string]int{"hour": 4, "day": 3, "month": 2, "none": 0} {
		s2, p2 := trimPartitions(s, parts, by)
		if len(p2) != want || len(s2.Fields) != len(s.Fields)-(4-want) {
			t.Errorf("%s: %d partitions, %d fields", by, len(p2), len(s2.Fields))
		}
	}
}
