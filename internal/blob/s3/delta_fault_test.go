package s3_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/blob/faulty"
	"github.com/silt-dev/silt/internal/blob/s3"
	"github.com/silt-dev/silt/internal/blob/s3/s3test"
	"github.com/silt-dev/silt/internal/delta"
)

// TestDeltaCommitsUnderFaults commits a Delta table on S3 while the store's
// requests are throttled, fail with 5xx, time out and lose their replies
// after taking effect, including a lost reply on every attempt (the store
// gives up and the Delta commit loop re-reads the version file for its
// txnId). Checkpoints every 3 versions put Parquet through multipart-free
// PutIfAbsent and ranged reads. Afterwards: versions are contiguous, every
// commit is there exactly once, the txn watermark is right.
func TestDeltaCommitsUnderFaults(t *testing.T) {
	servers(t, func(t *testing.T, srv *s3test.Server) {
		s, tr := faultyStore(t, srv, func(o *s3.Options) {
			o.MaxAttempts = 4
			o.RequestTimeout = 300 * time.Millisecond
		})
		ctx := bg(t)
		tab := delta.NewTable(s, "bronze/public/t")
		schema, err := delta.ParseSchema(`{"type":"struct","fields":[{"name":"id","type":"long","nullable":false,"metadata":{}}]}`)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := delta.CreateTable(ctx, tab, schema, nil, map[string]string{"delta.checkpointInterval": "3"}, "t"); err != nil {
			t.Fatal(err)
		}
		commitRule := func(k faulty.Kind, status int, code string, times int) faulty.Rule {
			return faulty.Rule{Method: "PUT", Path: "_delta_log/", Header: "If-None-Match", Kind: k, Status: status, Code: code, Times: times}
		}
		steps := []struct {
			name  string
			rules []faulty.Rule
		}{
			{"clean", nil},
			{"lost reply", []faulty.Rule{commitRule(faulty.LoseReply, 0, "", 1)}},
			{"500 after success", []faulty.Rule{commitRule(faulty.StatusAfter, 500, "InternalError", 1)}},
			{"slow down", []faulty.Rule{commitRule(faulty.Status, 503, "SlowDown", 2)}},
			{"timeout", []faulty.Rule{commitRule(faulty.Stall, 0, "", 1)}},
			// Every attempt loses its reply: the store returns an error and
			// the commit loop finds its own txnId in the version file.
			{"lost reply on every attempt", []faulty.Rule{commitRule(faulty.LoseReply, 0, "", 4)}},
			{"500 on reads", []faulty.Rule{{Method: "GET", Kind: faulty.Status, Status: 500, Code: "InternalError", Times: 3}}},
			{"reset on list", []faulty.Rule{{Method: "GET", Query: "list-type", Kind: faulty.Reset, Times: 2}}},
			{"lost reply on checkpoint", []faulty.Rule{{Method: "PUT", Path: "checkpoint", Kind: faulty.LoseReply, Times: 1}}},
		}
		for i, st := range steps {
			tr.Clear()
			for _, r := range st.rules {
				tr.Add(r)
			}
			fired := tr.Fired()
			snap, err := tab.Snapshot(ctx)
			if err != nil {
				t.Fatalf("step %q: snapshot: %v", st.name, err)
			}
			tx := tab.Begin(snap)
			tx.Add(&delta.Add{Path: fmt.Sprintf("f%02d.parquet", i), PartitionValues: map[string]*string{}, Size: 1, ModificationTime: 1, DataChange: true})
			tx.SetAppTxn("shard-0", int64(i+1))
			v, err := tx.Commit(ctx, "WRITE", nil)
			if err != nil {
				t.Fatalf("step %q: commit: %v", st.name, err)
			}
			if err := tx.PostCommitError(); err != nil {
				t.Fatalf("step %q: checkpoint or cleanup: %v", st.name, err)
			}
			if v != int64(i+1) {
				t.Fatalf("step %q: committed version %d, want %d", st.name, v, i+1)
			}
			if len(st.rules) > 0 && tr.Fired() == fired {
				t.Fatalf("step %q: no fault fired", st.name)
			}
		}
		tr.Clear()
		checkTable(t, tab, len(steps))
	})
}

// TestDeltaConcurrentWritersUnderFaults: 4 writers append to one table at
// once through one faulty store; lost replies and throttling on commits.
// Every writer's commits land exactly once, at contiguous versions.
func TestDeltaConcurrentWritersUnderFaults(t *testing.T) {
	servers(t, func(t *testing.T, srv *s3test.Server) {
		s, tr := faultyStore(t, srv, func(o *s3.Options) { o.MaxAttempts = 6 })
		ctx := bg(t)
		tab := delta.NewTable(s, "t")
		schema, _ := delta.ParseSchema(`{"type":"struct","fields":[{"name":"id","type":"long","nullable":false,"metadata":{}}]}`)
		if _, err := delta.CreateTable(ctx, tab, schema, nil, map[string]string{"delta.checkpointInterval": "5"}, "t"); err != nil {
			t.Fatal(err)
		}
		tr.Add(faulty.Rule{Method: "PUT", Path: "_delta_log/", Header: "If-None-Match", Kind: faulty.LoseReply, Skip: 1, Times: 4})
		tr.Add(faulty.Rule{Method: "PUT", Path: "_delta_log/", Header: "If-None-Match", Kind: faulty.Status, Status: 503, Code: "SlowDown", Times: 4})
		const writers, each = 4, 4
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					// Blind appends retry on conflict inside Commit.
					snap, err := tab.Snapshot(ctx)
					if err != nil {
						errs <- err
						return
					}
					tx := tab.Begin(snap)
					tx.Add(&delta.Add{Path: fmt.Sprintf("w%d-%d.parquet", w, i), PartitionValues: map[string]*string{}, Size: 1, ModificationTime: 1, DataChange: true})
					tx.SetAppTxn(fmt.Sprintf("shard-%d", w), int64(i+1))
					if _, err := tx.Commit(ctx, "WRITE", nil); err != nil {
						var ce *delta.ConflictError
						if errors.As(err, &ce) {
							err = fmt.Errorf("writer %d commit %d: %w", w, i, err)
						}
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if tr.Fired() == 0 {
			t.Fatal("no fault fired")
		}
		tr.Clear()
		snap := checkTable(t, tab, writers*each)
		for w := range writers {
			if v, ok := snap.TxnVersion(fmt.Sprintf("shard-%d", w)); !ok || v != each {
				t.Errorf("txn shard-%d = %d, %v; want %d", w, v, ok, each)
			}
		}
	})
}

// checkTable: versions 0..n, one commit file each, every added path once in
// the log and in the snapshot.
func checkTable(t *testing.T, tab *delta.Table, n int) *delta.Snapshot {
	t.Helper()
	ctx := context.Background()
	latest, err := tab.LatestVersion(ctx)
	if err != nil || latest != int64(n) {
		t.Fatalf("latest version %d, %v; want %d", latest, err, n)
	}
	infos, err := tab.Store().List(ctx, tab.Root()+"/_delta_log/")
	if err != nil {
		t.Fatal(err)
	}
	var commits []string
	for _, in := range infos {
		if len(in.Key) > 5 && in.Key[len(in.Key)-5:] == ".json" {
			commits = append(commits, in.Key)
		}
	}
	if len(commits) != n+1 {
		t.Fatalf("%d commit files, want %d: %v", len(commits), n+1, commits)
	}
	seen := map[string]int64{}
	for v := int64(1); v <= int64(n); v++ {
		acts, err := tab.ReadCommit(ctx, v)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range acts {
			if a.Add != nil {
				if prev, dup := seen[a.Add.Path]; dup {
					t.Fatalf("%s added at versions %d and %d (duplicated commit)", a.Add.Path, prev, v)
				}
				seen[a.Add.Path] = v
			}
		}
	}
	if len(seen) != n {
		t.Fatalf("%d files added, want %d", len(seen), n)
	}
	snap, err := tab.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, a := range snap.Files() {
		files = append(files, a.Path)
	}
	var want []string
	for p := range seen {
		want = append(want, p)
	}
	slices.Sort(files)
	slices.Sort(want)
	if !slices.Equal(files, want) {
		t.Fatalf("snapshot files %v, want %v", files, want)
	}
	return snap
}
