package pipeline_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/demo"
	"github.com/silt-dev/silt/internal/stream/locallog"
	"github.com/silt-dev/silt/internal/testutil/pgtest"
)

// TestReshardBetweenRuns splits the embedded stream's physical shards
// while silt is stopped (as `silt stream split` does), lets changes wait in
// the slot, runs again, then merges two children and runs once more. The
// Bronze writer's per-shard positions and txn appIds and the pipeline's
// per-shard dedup are logical and survive the reshards: Silver equals the
// source, Bronze holds every change once, the slot never passes Bronze.
func TestReshardBetweenRuns(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(t, demo.DDL)
	dataDir := t.TempDir()
	cfg := testConfig(t, db, dataDir)
	seed := uint64(time.Now().UnixNano())
	t.Logf("workload seed %d", seed)
	work := func(n int64, s uint64, base int) {
		t.Helper()
		if err := demo.Workload(context.Background(), db.DSN, demo.WorkloadOptions{MinChanges: n, Workers: 2, Seed: seed + s, IDBase: base}); err != nil {
			t.Fatal(err)
		}
	}
	reshard := func(f func(context.Context, *locallog.Log) error) {
		t.Helper()
		l, err := locallog.Open(cfg.Stream.Dir, locallog.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if err := f(context.Background(), l); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}

	r := start(t, cfg)
	work(2000, 0, 0)
	waitEqual(t, r, db, time.Minute)
	r.shutdown(t)

	var children []int
	reshard(func(ctx context.Context, l *locallog.Log) error {
		for _, id := range []int{0, 1} {
			ids, err := l.SplitShard(ctx, id, "")
			if err != nil {
				return err
			}
			children = append(children, ids...)
		}
		return nil
	})
	work(2000, 1, 100_000) // waits in the slot
	r2 := start(t, testConfig(t, db, dataDir))
	waitEqual(t, r2, db, time.Minute)
	work(2000, 2, 200_000)
	waitEqual(t, r2, db, time.Minute)
	r2.shutdown(t)

	reshard(func(ctx context.Context, l *locallog.Log) error {
		_, err := l.MergeShards(ctx, children[0], children[1])
		return err
	})
	r3 := start(t, testConfig(t, db, dataDir))
	work(2000, 3, 300_000)
	waitEqual(t, r3, db, time.Minute)
	r3.shutdown(t)

	l, err := locallog.Open(cfg.Stream.Dir, locallog.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	used := 0
	for _, s := range l.Topology() {
		if len(s.Parents) > 0 && s.End > 0 {
			used++
		}
	}
	l.Close()
	if used < 3 {
		t.Fatalf("only %d physical shards made by the reshards hold records; the test did not exercise them", used)
	}
	checkBronzeNoDuplicates(t, r3.p.Store())
	checkSlotNotPastBronze(t, db, cfg)
}
