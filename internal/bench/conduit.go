package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// PeerResult is a peer tool draining the same backlog as silt.
type PeerResult struct {
	Name     string  `json:"name"`
	Ran      bool    `json:"ran"`
	Why      string  `json:"why,omitempty"` // why it did not run
	Job      string  `json:"job,omitempty"`
	Records  int64   `json:"records"`
	Secs     float64 `json:"seconds"` // from process start until the last record was in the output file
	Rate     float64 `json:"records_per_s"`
	Use      Usage   `json:"usage"`
	SiltRate float64 `json:"silt_changes_per_s"` // silt on the same backlog (to Bronze)
	Ratio    float64 `json:"ratio"`              // silt / peer
}

// runConduit runs Conduit's builtin postgres source (logical replication,
// no snapshot, slot created before the backlog) into its builtin file
// destination on the backlog of the insert scenario, and times it until
// the file holds every record.
// It gives up after deadline.
func (e *env) runConduit(ctx context.Context, bin, dsn, table, publication, slot string, records int64, deadline time.Duration) (PeerResult, error) {
	res := PeerResult{Name: "Conduit", Records: records,
		Job: "builtin:postgres (cdcMode logrepl, snapshotMode never, pre-created slot) -> builtin:file (OpenCDC JSON lines)"}
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	dir, err := e.dataDir("conduit")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	outFile := filepath.Join(dir, "out.jsonl")
	pipeline := fmt.Sprintf(`version: 2.2
pipelines:
  - id: pg-to-file
    status: running
    connectors:
      - id: pg
        type: source
        plugin: builtin:postgres
        settings:
          url: %q
          tables: %q
          cdcMode: logrepl
          snapshotMode: never
          logrepl.publicationName: %q
          logrepl.slotName: %q
          logrepl.autoCleanup: "false"
      - id: file
        type: destination
        plugin: builtin:file
        settings:
          path: %q
`, withSSLDisable(dsn), table, publication, slot, outFile)
	if err := os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte(pipeline), 0o644); err != nil {
		return res, err
	}
	logPath := filepath.Join(os.TempDir(), "silt-bench-conduit.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return res, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, bin, "run", "--db.type", "inmemory", "--pipelines.path", filepath.Join(dir, "pipeline.yaml"),
		"--api.enabled=false", "--log.level", "info", "--log.format", "json", "--connectors.path", filepath.Join(dir, "connectors"),
		"--processors.path", filepath.Join(dir, "processors"), "--pipelines.exit-on-degraded")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, err
	}
	hwm := watchHWM(cmd.Process.Pid)
	exited := make(chan error, 1)
	go func() { exited <- waitReaped(cmd, hwm) }()
	var lines int64
	var off int64
	buf := make([]byte, 1<<20)
	for lines < records {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			res.Why = fmt.Sprintf("conduit exited after %d of %d records: %v: %s (log: %s)", lines, records, err, lastLine(b), logPath)
			return res, nil
		case <-time.After(20 * time.Millisecond):
		}
		if f, err := os.Open(outFile); err == nil {
			for {
				n, err := f.ReadAt(buf, off)
				lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
				off += int64(n)
				if err != nil || n == 0 {
					break
				}
			}
			f.Close()
		}
		if time.Since(start) > deadline {
			cmd.Process.Signal(syscall.SIGINT)
			<-exited
			b, _ := os.ReadFile(logPath)
			res.Why = fmt.Sprintf("conduit wrote %d of %d records in %s: %s (log: %s)", lines, records, deadline, lastLine(b), logPath)
			return res, nil
		}
	}
	wall := time.Since(start)
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
	res.Ran = true
	res.Secs = wall.Seconds()
	res.Rate = float64(records) / res.Secs
	res.Use = childUsage(cmd, wall, hwm.peak)
	res.Use.Source = "child process rusage (whole run, including its shutdown)"
	fmt.Fprintf(e.out, "conduit: %d records in %.2fs (%.0f/s); %.1f CPU s, peak RSS %.0f MiB\n", records, res.Secs, res.Rate, res.Use.CPUSeconds, res.Use.PeakRSSMiB)
	return res, nil
}

func lastLine(b []byte) string {
	b = bytes.TrimSpace(b)
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	if len(b) > 300 {
		b = b[:300]
	}
	return string(b)
}

func withSSLDisable(dsn string) string {
	if strings.Contains(dsn, "sslmode=") {
		return dsn
	}
	if strings.Contains(dsn, "?") {
		return dsn + "&sslmode=disable"
	}
	return dsn + "?sslmode=disable"
}
