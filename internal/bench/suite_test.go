package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestRowsAndPrint(t *testing.T) {
	d := DrainResult{Changes: 1_000_000, RecvlogicalRate: 100_000, SiltCaptureRate: 80_000, SiltSilverRate: 30_000,
		CaptureVsRecv: 0.8, SilverVsRecv: 0.3, SiltUse: Usage{CPUSeconds: 20, PeakRSSMiB: 300}, RecvlogicalUse: Usage{CPUSeconds: 2},
		Rounds: 3, CaptureUse: Usage{CPUSeconds: 5}, RecvlogicalRuns: []float64{90_000, 100_000, 110_000}, SiltCaptureRuns: []float64{70_000, 80_000, 85_000},
		RoundLoad: []float64{1.5, 2, 2.25}, PipelineCaptureRate: 50_000, PipelineVsRecv: 0.5}
	rep := Report{Mode: "quick", Insert: &d,
		E2E: &E2EResult{Drain: d, Rates: []RateResult{{Offered: 0, Changes: 500_000, Achieved: 10_000, Sustained: 9_000,
			P50: 800 * time.Millisecond, P99: 2 * time.Second, Usage: Usage{CPUSeconds: 10}}}},
		DeltaOps: &DeltaOps{DeltaLake: "1.0", Results: []DeltaOpsResult{{Name: "MERGE (uniform keys)",
			Silt: DeltaOpsEngine{Seconds: 2, CPUSeconds: 3}, DeltaRS: DeltaOpsEngine{Seconds: 4, CPUSeconds: 4},
			Size: map[string]any{"keys": float64(100_000), "rows": float64(10_000_000)}, Ratio: 2}}},
		Peer: PeerResult{Name: "Conduit", Why: "no binary"}}
	rs := rows(rep, Options{})
	find := func(prefix string) Row {
		for _, r := range rs {
			if strings.HasPrefix(r.Scenario, prefix) {
				return r
			}
		}
		t.Fatalf("no row %q in %+v", prefix, rs)
		return Row{}
	}
	if r := find("capture drain, inserts (into stream)"); r.Ratio != 0.8 || r.CPUPerM != 5 || r.BaseCPUPM != 2 ||
		!strings.Contains(r.Note, "median of 3") || !strings.Contains(r.Note, "silt 70000/80000/85000, pg_recvlogical 90000/100000/110000, load1 1.5/2.0/2.2") {
		t.Errorf("capture row %+v", r)
	}
	if r := find("capture drain, inserts, full pipeline"); r.Ratio != 0.5 || r.Silt != 50_000 || r.CPUPerM != 20 {
		t.Errorf("full pipeline capture row %+v", r)
	}
	if r := find("end-to-end, offered max"); r.Baseline != 100_000 || r.Ratio != 0.09 || r.CPUPerM != 20 {
		t.Errorf("max row %+v", r)
	}
	if r := find("freshness p99, offered max"); r.Silt != 2000 {
		t.Errorf("p99 row %+v", r)
	}
	if r := find("Delta MERGE"); r.Ratio != 2 || r.CPUPerM != 30 || r.BaseCPUPM != 40 {
		t.Errorf("merge row %+v", r)
	}
	if r := find("peer: Conduit"); !strings.Contains(r.Note, "no binary") {
		t.Errorf("peer row %+v", r)
	}
	var b bytes.Buffer
	rep.Rows = rs
	rep.Print(&b)
	for _, want := range []string{"capture drain, inserts (into stream)", "not run: no binary", "ratio > 1: silt better"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}

func TestWithSSLDisable(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u@h:1/db":                 "postgres://u@h:1/db?sslmode=disable",
		"postgres://u@h:1/db?x=1":             "postgres://u@h:1/db?x=1&sslmode=disable",
		"postgres://u@h:1/db?sslmode=require": "postgres://u@h:1/db?sslmode=require",
	} {
		if got := withSSLDisable(in); got != want {
			t.Errorf("withSSLDisable(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMeterAndUsage(t *testing.T) {
	m := startMeter()
	x := 0
	for i := range 1_000_000 {
		x += i
	}
	u := m.stop()
	if u.CPUSeconds < 0 || u.WallSecs <= 0 || u.PeakRSSMiB <= 0 {
		t.Errorf("usage %+v (x=%d)", u, x)
	}
	if got := (Usage{CPUSeconds: 3}).PerMillion(500_000); got != 6 {
		t.Errorf("PerMillion = %v", got)
	}
}
