package silver

import (
	"encoding/json"
	"testing"

	"github.com/silt-dev/silt/internal/delta"
)

// TestKeyRangeDisjoint: a Silver file's min/max stats prove a Bronze
// file's key range apart only when the bound that separates them is
// known: a null or missing bound, a maybe-truncated max or a value of
// another type proves nothing.
func TestKeyRangeDisjoint(t *testing.T) {
	stats := func(lo, hi string) *silverStats {
		st := &silverStats{MinValues: map[string]json.RawMessage{}, MaxValues: map[string]json.RawMessage{}}
		if lo != "" {
			st.MinValues["k"] = json.RawMessage(lo)
		}
		if hi != "" {
			st.MaxValues["k"] = json.RawMessage(hi)
		}
		return st
	}
	str := keyRange{kind: 's', slo: "m", shi: "p"}
	i := keyRange{kind: 'i', lo: -5, hi: 9223372036854775807}
	for _, tc := range []struct {
		name string
		r    keyRange
		st   *silverStats
		want bool
	}{
		{"string below", str, stats(`"q"`, `"z"`), true},
		{"string above", str, stats(`"a"`, `"l"`), true},
		{"string overlaps", str, stats(`"a"`, `"n"`), false},
		{"string max null", str, stats(`"a"`, `null`), false},
		{"string min null", str, stats(`null`, `"z"`), false},
		{"string max missing", str, stats(`"a"`, ""), false},
		{"string max of 32 characters", str, stats(`"a"`, `"llllllllllllllllllllllllllllllll"`), false},
		{"string stats numbers", str, stats(`1`, `2`), false},
		{"int below", i, stats(`-10`, `-6`), true},
		{"int at the top", i, stats(`9223372036854775807`, `9223372036854775807`), false},
		{"int stats strings", i, stats(`"-10"`, `"-6"`), false},
		{"int max null", i, stats(`-10`, `null`), false},
		{"no stats", str, nil, false},
	} {
		if got := tc.r.disjoint(tc.st, "k"); got != tc.want {
			t.Errorf("%s: disjoint = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestOpsOfPass: a Bronze file is skipped by a pass only when its
// _silt_op stats prove it holds no row of the pass.
func TestOpsOfPass(t *testing.T) {
	for _, tc := range []struct {
		stats      string
		load, logd bool // read by ProcessLoad, by Process
	}{
		{``, true, true},
		{`{"numRecords":3}`, true, true},
		{`not json`, true, true},
		{`{"minValues":{"_silt_op":"L"},"maxValues":{"_silt_op":"L"}}`, true, false},
		{`{"minValues":{"_silt_op":"D"},"maxValues":{"_silt_op":"U"}}`, true, true},
		{`{"minValues":{"_silt_op":"I"},"maxValues":{"_silt_op":"L"}}`, true, true},
		{`{"minValues":{"_silt_op":"L"},"maxValues":{"_silt_op":"U"}}`, true, true},
		{`{"minValues":{"_silt_op":"D"},"maxValues":{"_silt_op":"I"}}`, false, true},
		{`{"minValues":{"_silt_op":"T"},"maxValues":{"_silt_op":"U"}}`, false, true},
		{`{"minValues":{"_silt_op":"L"},"maxValues":{"_silt_op":null}}`, true, true},
		{`{"minValues":{"_silt_op":null},"maxValues":{"_silt_op":"L"}}`, true, true},
		{`{"minValues":{},"maxValues":{"_silt_op":"L"}}`, true, true},
		{`{"minValues":{"_silt_op":1},"maxValues":{"_silt_op":2}}`, true, true},
	} {
		f := &delta.Add{Path: "f.parquet", Stats: tc.stats}
		if got := opsOfPass(f, true); got != tc.load {
			t.Errorf("%s: load pass reads it = %v, want %v", tc.stats, got, tc.load)
		}
		if got := opsOfPass(f, false); got != tc.logd {
			t.Errorf("%s: change pass reads it = %v, want %v", tc.stats, got, tc.logd)
		}
	}
}
