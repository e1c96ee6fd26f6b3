package pipeline_test

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/bronze"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/demo"
	"github.com/silt-dev/silt/internal/pipeline"
	"github.com/silt-dev/silt/internal/silver"
	"github.com/silt-dev/silt/internal/testutil/pgtest"
)

var (
	siltBinOnce sync.Once
	siltBin     string
	siltBinErr  error
)

// buildSilt builds cmd/silt once per test binary.
func buildSilt(t *testing.T) string {
	t.Helper()
	siltBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "silt-bin-")
		if err != nil {
			siltBinErr = err
			return
		}
		siltBin = filepath.Join(dir, "silt")
		out, err := exec.Command("go", "build", "-o", siltBin, "github.com/silt-dev/silt/cmd/silt").CombinedOutput()
		if err != nil {
			siltBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if siltBinErr != nil {
		t.Fatal(siltBinErr)
	}
	return siltBin
}

// TestCrashKill9 runs "silt run" under a mixed workload (inserts, updates,
// deletes, TOASTed values, one ADD COLUMN), SIGKILLs it at random moments,
// then drains, and checks:
//   - after every kill: the slot's confirmed LSN never passed what Bronze held
//     (every change with commit LSN below it was already in Bronze);
//   - at the end: every Silver table equals its source; Delta versions are
//     contiguous; every file the logs reference exists with its logged size;
//     Bronze holds each change once.
//
// SILT_KILL_ROUNDS sets the number of kills (default 20); SILT_KILL_SEED replays a run.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kill test skipped in -short mode")
	}
	rounds := 20
	if v, err := strconv.Atoi(os.Getenv("SILT_KILL_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("SILT_KILL_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("kill test: %d rounds, seed %d (replay with SILT_KILL_SEED=%d)", rounds, seed, seed)
	rng := mrand.New(mrand.NewPCG(seed, 0x5117))

	bin := buildSilt(t)
	db := pgtest.NewDB(t)
	db.Exec(t, demo.DDL)
	dataDir := t.TempDir()
	if os.Getenv("SILT_KILL_KEEP") != "" { // keep the stream and lake for a post-mortem
		dataDir, _ = os.MkdirTemp("", "silt-kill-")
		t.Logf("data kept in %s", dataDir)
	}
	cfg := testConfig(t, db, dataDir)
	cfgPath := filepath.Join(dataDir, "silt.yaml")
	yaml := fmt.Sprintf(`source:
  dsn: %q
  slot: %s
  publication: %s
  tables: [silt_demo.devices, silt_demo.readings]
  status_interval: 500ms
stream:
  dir: %s
  shards: 3
  durability: fsync
lake:
  path: %s
bronze:
  flush_interval: 150ms
silver:
  interval: 200ms
status:
  listen: "off"
log:
  level: warn
`, cfg.Source.DSN, cfg.Source.Slot, cfg.Source.Publication, cfg.Stream.Dir, cfg.Lake.Path)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := local.New(cfg.Lake.Path)
	if err != nil {
		t.Fatal(err)
	}

	// Create the slot first: changes made before it exists are not captured
	// (that is the initial snapshot's job, tested elsewhere).
	if p, err := pipeline.Open(context.Background(), cfg, nil); err != nil {
		t.Fatal(err)
	} else {
		p.Close()
	}

	// The workload runs for the whole test, paced so the pipeline keeps up.
	ctx, stopWork := context.WithCancel(context.Background())
	defer stopWork()
	var changes atomic.Int64
	workErr := make(chan error, 1)
	go func() {
		err := demo.Workload(ctx, db.DSN, demo.WorkloadOptions{Duration: time.Hour, Rate: 3000, Workers: 2, Seed: seed, Changes: &changes})
		if ctx.Err() != nil {
			err = nil
		}
		workErr <- err
	}()
	addColumnAt := rounds / 2

	var logs strings.Builder
	var checks []ackCheck
	for round := 0; round < rounds; round++ {
		if round == addColumnAt {
			db.Exec(t, "ALTER TABLE silt_demo.devices ADD COLUMN firmware_rev integer")
			db.Exec(t, "UPDATE silt_demo.devices SET firmware_rev = device_id % 7 WHERE device_id % 3 = 0")
			t.Logf("round %d: added column silt_demo.devices.firmware_rev", round)
		}
		cmd := exec.Command(bin, "run", "--config", cfgPath)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		life := time.Duration(300+rng.IntN(2200)) * time.Millisecond
		select {
		case err := <-exited:
			t.Fatalf("round %d: silt exited by itself after <%s: %v\n%s", round, life, err, out.String())
		case <-time.After(life):
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		fmt.Fprintf(&logs, "--- round %d (killed after %s)\n%s", round, life, out.String())

		// The slot may only have been acknowledged up to what Bronze holds.
		checks = append(checks, ackCheck{round: round, confirmed: slotConfirmed(t, db, cfg.Source.Slot), held: bronzePositions(t, store)})
		select {
		case err := <-workErr:
			t.Fatalf("workload failed: %v", err)
		default:
		}
	}
	stopWork()
	if err := <-workErr; err != nil {
		t.Fatalf("workload: %v", err)
	}
	t.Logf("%d changes made during %d kills", changes.Load(), rounds)

	// Drain: one last run, stopped only once Silver equals the source.
	r := start(t, cfg)
	res := waitEqual(t, r, db, 3*time.Minute)
	for _, v := range res {
		t.Log(v)
	}
	r.shutdown(t)
	checkBronzeNoDuplicates(t, store)
	final := bronzePositions(t, store)
	advanced := 0
	for _, c := range checks {
		if c.confirmed > 0 {
			advanced++
		}
		for row := range final {
			if row.op == "L" {
				continue // snapshot rows do not come from the slot
			}
			if change.LSN(row.lsn) < c.confirmed && !c.held[row] {
				t.Errorf("after kill %d the slot was confirmed at %s, but change %+v (commit LSN %s) was not yet in Bronze",
					c.round, c.confirmed, row, change.LSN(row.lsn))
				break
			}
		}
	}
	if advanced == 0 {
		t.Error("the slot's confirmed LSN never advanced during the kill rounds; the test checked nothing")
	}
	for _, tb := range demo.Tables {
		checkTableFiles(t, store, bronze.TablePath(tb))
		checkTableFiles(t, store, silver.TablePath(tb))
	}
	checkTableFiles(t, store, bronze.ProgressPath)
	if t.Failed() {
		t.Log(logs.String())
	}
}

func slotConfirmed(t *testing.T, db *pgtest.DB, slot string) change.LSN {
	t.Helper()
	var s string
	db.QueryRow(t, []any{&s}, "SELECT coalesce(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots WHERE slot_name = $1", slot)
	l, err := change.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type bronzeRow struct {
	table string
	lsn   int64
	pos   int64
	op    string
}

// bronzePositions returns every change Bronze holds now.
func bronzePositions(t *testing.T, store blob.Store) map[bronzeRow]bool {
	t.Helper()
	out := map[bronzeRow]bool{}
	forEachBronzeRow(t, store, demo.Tables, true, func(tb change.TableID, r bronzeRowView) error {
		out[bronzeRow{tb.String(), r.lsn, r.pos, r.op}] = true
		return nil
	})
	return out
}

type ackCheck struct {
	round     int
	confirmed change.LSN
	held      map[bronzeRow]bool
}

// checkTableFiles checks a Delta table's log and files: versions are
// contiguous from the first retained one, and every live file exists with
// the size the log records.
func checkTableFiles(t *testing.T, store blob.Store, root string) {
	t.Helper()
	ctx := context.Background()
	infos, err := store.List(ctx, root+"/_delta_log/")
	if err != nil {
		t.Fatal(err)
	}
	var versions []int64
	for _, in := range infos {
		name := strings.TrimPrefix(in.Key, root+"/_delta_log/")
		if m := commitName.FindStringSubmatch(name); m != nil {
			v, _ := strconv.ParseInt(m[1], 10, 64)
			versions = append(versions, v)
		}
	}
	if len(versions) == 0 {
		t.Errorf("%s: no commits", root)
		return
	}
	for i := 1; i < len(versions); i++ {
		if versions[i] != versions[i-1]+1 {
			t.Errorf("%s: versions not contiguous: %d then %d", root, versions[i-1], versions[i])
		}
	}
	dt := delta.NewTable(store, root)
	snap, err := dt.Snapshot(ctx)
	if err != nil {
		t.Errorf("%s: %v", root, err)
		return
	}
	for _, f := range snap.Files() {
		key, err := dt.ObjectKey(f.Path)
		if err != nil {
			t.Errorf("%s: %v", root, err)
			continue
		}
		r, err := store.Open(ctx, key)
		if err != nil {
			t.Errorf("%s: referenced file %s: %v", root, f.Path, err)
			continue
		}
		if r.Size() != f.Size {
			t.Errorf("%s: file %s is %d bytes, the log says %d", root, f.Path, r.Size(), f.Size)
		}
		r.Close()
	}
}

var commitName = regexp.MustCompile(`^(\d{20})\.json$`)
