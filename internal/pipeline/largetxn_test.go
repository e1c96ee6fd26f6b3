package pipeline_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/source/pgrepl"
	"github.com/silt-dev/silt/internal/testutil/pgtest"
)

const largeTxnRows = 2_000_000

// TestLargeTransactionBoundedMemory: one transaction of 2,000,000 inserted
// rows goes through capture (spilled to disk beyond source.txn_memory_limit,
// delivered in chunks), the stream, Bronze and Silver in a child process
// whose peak RSS (VmHWM) must stay under 512 MiB. The figure is printed.
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

	cmd := exec.Command(os.Args[0], "-test.run=^TestLargeTransactionChild$", "-test.v", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), "SILT_LARGE_TXN_CHILD=1", "SILT_LARGE_TXN_DSN="+db.DSN, "SILT_LARGE_TXN_SUFFIX="+db.Suffix)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
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
		t.Fatalf("child: %v", err)
	}
	peak := figures["SILT_PEAK_RSS_KIB"]
	fmt.Printf("large transaction: %d rows, capture+stream+bronze+silver in %s, peak RSS %.1f MiB (after bronze %.1f MiB), spilled transactions %d\n",
		largeTxnRows, time.Since(start).Round(time.Millisecond), float64(peak)/1024, float64(figures["SILT_BRONZE_RSS_KIB"])/1024, figures["SILT_SPILLED"])
	if peak == 0 || figures["SILT_SPILLED"] != 1 {
		t.Fatalf("child figures %v", figures)
	}
	if peak >= 512<<10 {
		t.Fatalf("peak RSS %d KiB, want < 512 MiB", peak)
	}
}

// TestLargeTransactionChild is the child process of
// TestLargeTransactionBoundedMemory; it does nothing in a normal run.
func TestLargeTransactionChild(t *testing.T) {
	if os.Getenv("SILT_LARGE_TXN_CHILD") == "" {
		t.Skip("child process of TestLargeTransactionBoundedMemory")
	}
	cfg := cdcConfig(t, os.Getenv("SILT_LARGE_TXN_DSN"), os.Getenv("SILT_LARGE_TXN_SUFFIX"), "public.items")
	cfg.Bronze.FlushInterval.Duration = time.Second
	// The server is silent for seconds while it decodes 2M rows: the
	// default (60s) receive timeout, not the fault tests' short one.
	cfg.Source.ReceiveTimeout.Duration = 60 * time.Second
	r := cdcStart(t, cfg, nil)
	cdcEventually(t, r, "bronze to hold every row", 5*time.Minute, func() bool { return r.p.Snapshot().BronzeRows >= largeTxnRows })
	fmt.Printf("SILT_BRONZE_RSS_KIB=%d\n", vmHWM(t))
	cdcEventually(t, r, "silver to merge every row", 5*time.Minute, func() bool { return r.p.Snapshot().SilverChanges >= largeTxnRows })
	r.shutdown(t)
	fmt.Printf("SILT_SPILLED=%d\n", r.p.SourceStats().SpilledTxns)
	fmt.Printf("SILT_PEAK_RSS_KIB=%d\n", vmHWM(t))
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
