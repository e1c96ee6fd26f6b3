package pipeline_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/source/pgrepl"
	"github.com/silt-dev/silt/internal/stream"
	"github.com/silt-dev/silt/internal/stream/locallog"
	"github.com/silt-dev/silt/internal/testutil/pgtest"
)

const largeTxnRows = 2_000_000

// TestLargeTransactionBoundedMemory: one transaction of 2,000,000 inserted
// rows is captured (spilled to disk beyond source.txn_memory_limit,
// delivered in chunks) and appended to a local stream in a child process
// whose peak RSS (VmHWM) must stay under 512 MiB. A second child runs the
// whole pipeline (capture, appender, Bronze, Silver) on the same slot
// content with DEFAULT settings: no memory_limit (and GOMEMLIMIT, GOGC
// removed from its environment), as a user who sets nothing runs it; its
// peak RSS must stay under 512 MiB too, held there only by the structures'
// own bounds. It prints the peak RSS and the peak live heap (after GC) per
// run (SILT_LARGE_TXN_FULL_LIMIT=<MiB> changes the bound,
// SILT_LARGE_TXN_MEMORY_LIMIT=<MiB> sets memory_limit for a comparison).
func TestLargeTransactionBoundedMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("RSS under the race detector is meaningless; run without -race")
	}
	if testing.Short() {
		t.Skip("slow: inserts 2,000,000 rows")
	}
	db := pgtest.NewDB(t)
	db.Exec(t, "CREATE TABLE items (id int PRIMARY KEY, v text)")
	cfg := cdcConfig(t, db.DSN, db.Suffix, "public.items")
	// The slot must exist before the transaction so that it is captured.
	src, err := pgrepl.Open(context.Background(), pgrepl.Config{DSN: db.DSN, Slot: cfg.Source.Slot, Publication: cfg.Source.Publication,
		Tables: []change.TableID{items}})
	if err != nil {
		t.Fatal(err)
	}
	src.Close()
	start := time.Now()
	db.Exec(t, fmt.Sprintf("INSERT INTO items SELECT g, 'value number ' || g FROM generate_series(1, %d) g", largeTxnRows))
	t.Logf("inserted %d rows in one transaction in %s", largeTxnRows, time.Since(start).Round(time.Millisecond))

	run := func(mode string) map[string]int64 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLargeTransactionChild$", "-test.v", "-test.timeout=10m")
		// Default settings: the runtime's own GC knobs are not inherited.
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "GOMEMLIMIT=") && !strings.HasPrefix(kv, "GOGC=") {
				env = append(env, kv)
			}
		}
		cmd.Env = append(env, "SILT_LARGE_TXN_CHILD="+mode, "SILT_LARGE_TXN_DSN="+db.DSN, "SILT_LARGE_TXN_SUFFIX="+db.Suffix)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		figures := map[string]int64{}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			t.Log("child: " + line)
			if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && strings.HasPrefix(k, "SILT_") {
				n, _ := strconv.ParseInt(v, 10, 64)
				figures[k] = n
			}
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %s: %v", mode, err)
		}
		if figures["SILT_PEAK_RSS_KIB"] == 0 || figures["SILT_SPILLED"] != 1 {
			t.Fatalf("child %s figures %v", mode, figures)
		}
		return figures
	}
	start = time.Now()
	capture := run("capture")
	peak := capture["SILT_PEAK_RSS_KIB"]
	fmt.Printf("large transaction: %d rows, capture (spill, chunks) + stream append in %s, peak RSS %.1f MiB, peak live heap %.1f MiB\n",
		largeTxnRows, time.Since(start).Round(time.Millisecond), float64(peak)/1024, float64(capture["SILT_PEAK_LIVE_KIB"])/1024)
	if peak >= 512<<10 {
		t.Errorf("capture peak RSS %d KiB, want < 512 MiB", peak)
	}
	start = time.Now()
	full := run("pipeline")
	fpeak := full["SILT_PEAK_RSS_KIB"]
	setting := "default settings, no memory limit"
	if m := full["SILT_MEMORY_LIMIT_MIB"]; m > 0 {
		setting = fmt.Sprintf("Go memory limit %d MiB", m)
	}
	fmt.Printf("large transaction: %d rows, whole pipeline (capture+appender+bronze+silver, %s) in %s (bronze done after %.1fs, silver after %.1fs), peak RSS %.1f MiB (after bronze %.1f MiB), peak live heap %.1f MiB\n",
		largeTxnRows, setting, time.Since(start).Round(time.Millisecond), float64(full["SILT_BRONZE_MS"])/1000, float64(full["SILT_SILVER_MS"])/1000,
		float64(fpeak)/1024, float64(full["SILT_BRONZE_RSS_KIB"])/1024, float64(full["SILT_PEAK_LIVE_KIB"])/1024)
	lim := int64(512)
	if v, err := strconv.ParseInt(os.Getenv("SILT_LARGE_TXN_FULL_LIMIT"), 10, 64); err == nil && v > 0 {
		lim = v
	}
	if fpeak >= lim<<10 {
		t.Errorf("whole-pipeline peak RSS %d KiB, want < %d MiB", fpeak, lim)
	}
}

// TestLargeTransactionChild is the child process of
// TestLargeTransactionBoundedMemory; it does nothing in a normal run.
func TestLargeTransactionChild(t *testing.T) {
	if os.Getenv("SILT_LARGE_TXN_CHILD") == "" {
		t.Skip("child process of TestLargeTransactionBoundedMemory")
	}
	cfg := cdcConfig(t, os.Getenv("SILT_LARGE_TXN_DSN"), os.Getenv("SILT_LARGE_TXN_SUFFIX"), "public.items")
	if os.Getenv("SILT_LARGE_TXN_CHILD") == "capture" {
		captureOnly(t, cfg)
		return
	}
	cfg.Bronze.FlushInterval.Duration = time.Second
	if v, err := strconv.ParseInt(os.Getenv("SILT_LARGE_TXN_MEMORY_LIMIT"), 10, 64); err == nil && v >= 0 {
		cfg.MemoryLimit = config.ByteSize(v << 20)
	}
	// The server is silent for seconds while it decodes 2M rows: the
	// default (60s) receive timeout, not the fault tests' short one.
	cfg.Source.ReceiveTimeout.Duration = 60 * time.Second
	start := time.Now()
	live := sampleLiveHeap()
	defer live.stop()
	r := cdcStart(t, cfg, nil)
	// The limit the runtime runs with (memory_limit, or 90% of a cgroup
	// limit; none here unless the machine's container has one).
	if lim := debug.SetMemoryLimit(-1); lim != math.MaxInt64 {
		fmt.Printf("SILT_MEMORY_LIMIT_MIB=%d\n", lim>>20)
	}
	// Sample RSS with the pipeline's progress, so the peak can be placed
	// in a stage (capture, Bronze, Silver overlap in time).
	stopSampler := make(chan struct{})
	sampled := make(chan string, 1)
	go func() {
		var peak, lastProf int64
		var at string
		// SILT_LARGE_TXN_TRACE=1 prints RSS every second; SILT_LARGE_TXN_PROF=dir
		// writes a heap profile at every new 64 MiB step of RSS.
		trace, prof := os.Getenv("SILT_LARGE_TXN_TRACE") != "", os.Getenv("SILT_LARGE_TXN_PROF")
		var last time.Time
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampler:
				sampled <- fmt.Sprintf("%.1f MiB at %s", float64(peak)/1024, at)
				return
			case <-tick.C:
			}
			rss := procStatus("VmRSS:")
			if trace && time.Since(last) >= time.Second {
				last = time.Now()
				st := r.p.Snapshot()
				fmt.Printf("trace %s: rss %.0f MiB, captured %d, bronze %d/%d, silver %d/%d\n", time.Since(start).Round(time.Second), float64(rss)/1024, st.Changes, st.BronzeRows, st.BronzeCommits, st.SilverChanges, st.SilverBatches)
			}
			if prof != "" && rss > lastProf+64<<10 {
				lastProf = rss
				if f, err := os.Create(filepath.Join(prof, fmt.Sprintf("heap-%04d.pprof", rss>>10))); err == nil {
					_ = pprof.WriteHeapProfile(f)
					f.Close()
				}
			}
			if rss > peak {
				s := r.p.Snapshot()
				peak, at = rss, fmt.Sprintf("%s: captured %d, bronze %d rows in %d commits, silver %d changes in %d batches",
					time.Since(start).Round(10*time.Millisecond), s.Changes, s.BronzeRows, s.BronzeCommits, s.SilverChanges, s.SilverBatches)
			}
		}
	}()
	cdcEventually(t, r, "bronze to hold every row", 5*time.Minute, func() bool { return r.p.Snapshot().BronzeRows >= largeTxnRows })
	s := r.p.Snapshot()
	fmt.Printf("bronze holds %d rows (%d commits) after %s\n", s.BronzeRows, s.BronzeCommits, time.Since(start).Round(10*time.Millisecond))
	fmt.Printf("SILT_BRONZE_MS=%d\n", time.Since(start).Milliseconds())
	fmt.Printf("SILT_BRONZE_RSS_KIB=%d\n", vmHWM(t))
	cdcEventually(t, r, "silver to merge every row", 5*time.Minute, func() bool { return r.p.Snapshot().SilverChanges >= largeTxnRows })
	s = r.p.Snapshot()
	fmt.Printf("silver merged %d changes (%d batches) after %s\n", s.SilverChanges, s.SilverBatches, time.Since(start).Round(10*time.Millisecond))
	fmt.Printf("SILT_SILVER_MS=%d\n", time.Since(start).Milliseconds())
	r.shutdown(t)
	close(stopSampler)
	fmt.Printf("sampled peak RSS %s\n", <-sampled)
	fmt.Printf("SILT_SPILLED=%d\n", r.p.SourceStats().SpilledTxns)
	fmt.Printf("SILT_PEAK_LIVE_KIB=%d\n", live.stop()>>10)
	fmt.Printf("SILT_PEAK_RSS_KIB=%d\n", vmHWM(t))
}

// liveHeap samples the runtime's live heap (marked by the last GC,
// /gc/heap/live:bytes) every 20ms: the peak is what the process needed,
// whatever GOGC made RSS grow to on top of it.
type liveHeap struct {
	done chan struct{}
	peak chan uint64
	once sync.Once
	max  uint64
}

func sampleLiveHeap() *liveHeap {
	l := &liveHeap{done: make(chan struct{}), peak: make(chan uint64, 1)}
	go func() {
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		var peak uint64
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			if s[0].Value.Kind() == metrics.KindUint64 {
				peak = max(peak, s[0].Value.Uint64())
			}
			select {
			case <-l.done:
				l.peak <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return l
}

// stop ends sampling and returns the peak live heap in bytes.
func (l *liveHeap) stop() uint64 {
	l.once.Do(func() {
		close(l.done)
		l.max = <-l.peak
	})
	return l.max
}

// procStatus reads one KiB figure of /proc/self/status (0 if absent).
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// vmHWM reads the process's peak resident set size in KiB.
func vmHWM(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return n
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// captureOnly drains the slot with pgrepl into a local stream, the way the
// pipeline's handler does (route, encode, append), without Bronze and
// Silver, until the large transaction's last batch.
func captureOnly(t *testing.T, cfg *config.Config) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live := sampleLiveHeap()
	defer live.stop()
	src, err := pgrepl.Open(ctx, pgrepl.Config{DSN: cfg.Source.DSN, Slot: cfg.Source.Slot, Publication: cfg.Source.Publication,
		Tables: []change.TableID{items}, SpillDir: filepath.Join(cfg.Stream.Dir, "spill"), HeartbeatInterval: -1, ReceiveTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	lg, err := locallog.Open(cfg.Stream.Dir, locallog.Options{Shards: 2, Durability: locallog.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	var rows int
	var buf []byte
	var entries []stream.Entry
	done := errors.New("done")
	err = src.Run(ctx, func(ctx context.Context, b *pgrepl.Batch) error {
		buf, entries = buf[:0], entries[:0]
		offs := make([]int, 0, len(b.Changes)+1)
		for _, c := range b.Changes {
			offs = append(offs, len(buf))
			buf = change.AppendEncode(buf, c)
		}
		offs = append(offs, len(buf))
		for i := range b.Changes {
			entries = append(entries, stream.Entry{PartitionKey: buf[offs[i]:offs[i+1]][:8], Data: buf[offs[i]:offs[i+1]]})
		}
		if err := lg.Append(ctx, entries); err != nil {
			return err
		}
		rows += len(b.Changes)
		if b.Last && rows >= largeTxnRows {
			return done
		}
		return nil
	})
	if !errors.Is(err, done) {
		t.Fatalf("capture: %v after %d rows", err, rows)
	}
	fmt.Printf("SILT_SPILLED=%d\n", src.Stats().SpilledTxns)
	fmt.Printf("SILT_PEAK_LIVE_KIB=%d\n", live.stop()>>10)
	fmt.Printf("SILT_PEAK_RSS_KIB=%d\n", vmHWM(t))
}
