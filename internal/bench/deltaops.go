package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
)

// DeltaOpsOptions run bench/deltaops/bench.py (silt's ops.Merge and
// ops.Optimize against delta-rs on identical tables, each engine in its own
// process).
type DeltaOpsOptions struct {
	Python     string // interpreter with deltalake and pyarrow (.venv/bin/python)
	Script     string // bench/deltaops/bench.py
	Rows       int    // MERGE target rows
	Keys       int    // MERGE changed keys
	SmallFiles int    // OPTIMIZE input files
	SmallRows  int    // rows per small file
	Scenarios  string // MERGE key distributions: uniform,tail
}

// DeltaOpsEngine is one engine's figures for one operation.
type DeltaOpsEngine struct {
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpu_seconds"`
	PeakRSSMiB float64 `json:"peak_rss_mb"`
}

// DeltaOpsResult is one operation.
type DeltaOpsResult struct {
	Name    string         `json:"name"`
	Silt    DeltaOpsEngine `json:"silt"`
	DeltaRS DeltaOpsEngine `json:"delta_rs"`
	Size    map[string]any `json:"size"`
	Ratio   float64        `json:"time_ratio_delta_rs_over_silt"`
}

// DeltaOps is the whole comparison.
type DeltaOps struct {
	DeltaLake string           `json:"deltalake"`
	Results   []DeltaOpsResult `json:"results"`
}

func runDeltaOps(ctx context.Context, o DeltaOpsOptions, work string, out io.Writer) (DeltaOps, error) {
	var res DeltaOps
	work, err := os.MkdirTemp(work, "silt-bench-deltaops-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(work)
	jsonPath := filepath.Join(work, "deltaops.json")
	args := []string{o.Script, "--rows", strconv.Itoa(o.Rows), "--keys", strconv.Itoa(o.Keys),
		"--small-files", strconv.Itoa(o.SmallFiles), "--small-rows", strconv.Itoa(o.SmallRows),
		"--scenarios", o.Scenarios, "--work", filepath.Join(work, "deltaops"), "--json", jsonPath}
	fmt.Fprintf(out, "delta: %s %v\n", o.Python, args)
	cmd := exec.CommandContext(ctx, o.Python, args...)
	pw := prefixWriter(out, "delta: ")
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("bench/deltaops: %w", err)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		return res, err
	}
	err = json.Unmarshal(b, &res)
	return res, err
}

// prefixWriter prefixes each whole line written to w (synchronously; a
// last line without a newline is dropped).
func prefixWriter(w io.Writer, prefix string) io.Writer { return &lineWriter{w: w, prefix: prefix} }

type lineWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		fmt.Fprintf(l.w, "%s%s\n", l.prefix, l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}
