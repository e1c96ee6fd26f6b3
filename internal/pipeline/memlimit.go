package pipeline

import (
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Memory limit (memory_limit): the Go runtime's soft limit
// (debug.SetMemoryLimit), the equivalent of a JVM heap limit. The
// structures of the pipeline are bounded by their own settings
// (source.txn_memory_limit, bronze.flush_bytes, Silver's batch rows); the
// soft limit makes the garbage collector return what they freed before the
// heap doubles (GOGC), so the process's resident size stays near the limit
// instead of near twice the live data. It is soft: a live heap above it
// makes the collector work harder, never fails an allocation.
//
// Precedence: the GOMEMLIMIT environment variable (Go's own, left alone),
// then memory_limit, then 90% of the container's cgroup memory limit, else
// none (Go's default).

// cgroupFiles hold the container's memory limit (cgroup v2, then v1).
var cgroupFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// memoryLimit returns the soft limit to set and where it comes from; 0: none.
func memoryLimit(configured int64, getenv func(string) string, readFile func(string) ([]byte, error)) (int64, string) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, "GOMEMLIMIT"
	}
	if configured > 0 {
		return configured, "memory_limit"
	}
	for _, f := range cgroupFiles {
		b, err := readFile(f)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 || n >= 1<<50 { // "max", or v1's "no limit" (a huge number)
			return 0, ""
		}
		return n / 10 * 9, "90% of the cgroup memory limit (" + f + ")"
	}
	return 0, ""
}

// applyMemoryLimit sets the runtime's soft memory limit (see memoryLimit).
func applyMemoryLimit(configured int64, logger *slog.Logger) {
	limit, from := memoryLimit(configured, os.Getenv, os.ReadFile)
	if limit <= 0 {
		return
	}
	if cur := debug.SetMemoryLimit(-1); cur != math.MaxInt64 && cur <= limit {
		return // a lower limit is already set (another pipeline in this process)
	}
	debug.SetMemoryLimit(limit)
	logger.Info("memory limit", "bytes", limit, "from", from)
}
