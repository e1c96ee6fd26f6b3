package cli

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestShardsPlan(t *testing.T) {
	p, err := parsePrices(defaultPrices)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in      shardPlanInput
		shards  int
		binding string
	}{
		// 5,000 records/s at 75% of 1,000 per shard: 7 shards.
		{shardPlanInput{WriteMBs: 3, RecordsS: 5000, Consumers: 1, Headroom: 0.25}, 7, "write records/s"},
		// 4 MB/s of 40 KB records: bytes bind (4 / 0.75 -> 6).
		{shardPlanInput{RecordsS: 100, AvgBytes: 40_000, Consumers: 1, Headroom: 0.25}, 6, "write MB/s"},
		// Three consumers of 1.5 MB/s share 2 MB/s per shard: 4.5 / 2 -> 3 with no headroom.
		{shardPlanInput{WriteMBs: 1.5, AvgBytes: 5000, Consumers: 3}, 3, "read MB/s"},
		// A tiny load still needs one shard.
		{shardPlanInput{RecordsS: 1, AvgBytes: 100, Consumers: 1}, 1, "write MB/s"},
	}
	for _, tc := range tests {
		pl, err := planShards(tc.in, p)
		if err != nil {
			t.Fatal(err)
		}
		if pl.Shards != tc.shards || pl.Binding != tc.binding {
			t.Errorf("%+v: %d shards bound by %s, want %d by %s", tc.in, pl.Shards, pl.Binding, tc.shards, tc.binding)
		}
	}
	// Cost arithmetic: 1 shard, 1 record/s of 100 bytes.
	pl, _ := planShards(shardPlanInput{RecordsS: 1, AvgBytes: 100, Consumers: 1}, p)
	wantProv := 730*0.015 + 730*3600/1e6*0.014
	if math.Abs(pl.ProvisionedMonth-wantProv) > 1e-9 {
		t.Errorf("provisioned %.6f, want %.6f", pl.ProvisionedMonth, wantProv)
	}
	wantOD := 730*0.04 + 1024*730*3600/1e9*0.08 + 100*730*3600/1e9*0.04
	if math.Abs(pl.OnDemandMonth-wantOD) > 1e-9 {
		t.Errorf("on-demand %.6f, want %.6f", pl.OnDemandMonth, wantOD)
	}
}

func TestShardsPlanCommand(t *testing.T) {
	code, out, errOut := run(t, "shards", "plan", "--write-mb-s", "3", "--records-s", "5000")
	if code != 0 || !strings.Contains(out, "recommended: 7 shard(s)") || !strings.Contains(out, "on-demand") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = run(t, "shards", "plan", "--records-s", "10")
	if code != 2 || !strings.Contains(errOut, "--avg-bytes") {
		t.Fatalf("records without size: exit %d, %q", code, errOut)
	}
	// An edited price table changes the figures.
	dir := t.TempDir()
	edited := strings.Replace(string(defaultPrices), "shard_hour: 0.015", "shard_hour: 1.0", 1)
	path := filepath.Join(dir, "prices.yaml")
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run(t, "shards", "plan", "--records-s", "500", "--avg-bytes", "100", "--prices", path)
	if code != 0 || !strings.Contains(out, "provisioned  748.40") {
		t.Fatalf("with --prices: exit %d\n%s%s", code, out, errOut)
	}
	if err := os.WriteFile(path, []byte("provisioned: {shard_hour: -1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = run(t, "shards", "plan", "--records-s", "5", "--avg-bytes", "1", "--prices", path); code != 2 || !strings.Contains(errOut, "must be positive") {
		t.Fatalf("bad price table: exit %d, %q", code, errOut)
	}
	if code, out, _ = run(t, "shards", "plan", "--print-prices"); code != 0 || !strings.Contains(out, "shard_hour") {
		t.Fatalf("--print-prices: exit %d, %q", code, out)
	}
}
