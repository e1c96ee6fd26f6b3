package ops_test

import (
	"context"
	"errors"
	"testing"

	"github.com/silt-dev/silt/internal/delta/ops"
)

// TestOptimizeMergeStopOnCancel: a cancelled context ends Optimize and
// Merge before an attempt starts, and nothing is committed.
func TestOptimizeMergeStopOnCancel(t *testing.T) {
	e := newEnv(t, false)
	e.seed(40, 10)
	before := e.snapshot().Version
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ops.Optimize(ctx, e.tbl, ops.OptimizeOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("optimize: %v", err)
	}
	e.ctx = ctx
	if _, err := e.merge(nil, nil, []row{{ID: 1, V: "x", LSN: 2}}, nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("merge: %v", err)
	}
	e.ctx = context.Background()
	if v := e.snapshot().Version; v != before {
		t.Fatalf("version %d after cancelled operations, want %d", v, before)
	}
}
