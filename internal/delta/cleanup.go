package delta

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// cleanedCutoffs remembers, per table (cacheKey) in this process, the
// cutoff of the last log cleanup that finished. Cleanup runs after every
// checkpoint (every 10th commit by default), but its cutoff is midnight
// UTC, so the set of expired files changes at most once a day: commits are
// never added in the past and checkpoints are written at new versions, so
// a second run with the same cutoff deletes nothing. Skipping it saves a
// listing of the whole _delta_log (millions of keys for a Silver table
// that commits every second and keeps 30 days) on all but one checkpoint a
// day.
var cleanedCutoffs sync.Map // cacheKey -> time.Time

// cleanupRuns counts cleanup runs that listed the log (tests).
var cleanupRuns atomic.Int64

// CleanupExpiredLogs deletes log files older than delta.logRetentionDuration
// (default 30 days), the metadata cleanup of PROTOCOL.md: the cutoff is
// midnight UTC of now minus the retention; the newest checkpoint at or below
// the newest expired commit is kept with everything after it, and only
// files of older versions (commits, checkpoints, .crc, compactions) are
// deleted. Without such a checkpoint nothing is deleted, so the oldest
// retained version can always be reconstructed.
func (t *Table) CleanupExpiredLogs(ctx context.Context, snap *Snapshot) error {
	retention, err := snap.configDuration("delta.logRetentionDuration", 30*24*time.Hour)
	if err != nil {
		return err
	}
	cutoff := t.now().Add(-retention).UTC().Truncate(24 * time.Hour)
	key, memo := t.cacheKey()
	if memo {
		if last, ok := cleanedCutoffs.Load(key); ok && !cutoff.After(last.(time.Time)) {
			return nil
		}
	}
	if err := t.cleanupBefore(ctx, snap, cutoff); err != nil {
		return err
	}
	if memo {
		cleanedCutoffs.Store(key, cutoff)
	}
	return nil
}

// cleanupBefore is one cleanup run with the given cutoff.
func (t *Table) cleanupBefore(ctx context.Context, snap *Snapshot, cutoff time.Time) error {
	cleanupRuns.Add(1)
	l, err := t.list(ctx)
	if err != nil {
		return err
	}
	versions := make([]int64, 0, len(l.commits))
	for v := range l.commits {
		versions = append(versions, v)
	}
	sort.Slice(versions, func(i, j int) bool { return versions[i] < versions[j] })
	expired := int64(-1)
	for _, v := range versions {
		if v > snap.Version || !l.commits[v].modTime.Before(cutoff) {
			break
		}
		expired = v
	}
	keep := int64(-1)
	for _, cp := range l.checkpoints {
		if cp.version <= expired {
			keep = cp.version
		}
	}
	if keep <= 0 {
		return nil
	}
	for _, f := range l.all {
		if f.version >= keep || !deletable(f, keep) {
			continue
		}
		if err := t.store.Delete(ctx, f.key); err != nil {
			return fmt.Errorf("delta: log cleanup: %w", err)
		}
	}
	return nil
}

func deletable(f logFile, keep int64) bool {
	switch f.kind {
	case kindCommit, kindCheckpoint:
		return true
	case kindV2Checkpoint:
		return false
	}
	name := f.key[strings.LastIndex(f.key, "/")+1:]
	if strings.HasSuffix(name, ".crc") {
		return true
	}
	// x.y.compacted.json: only when the whole range is older than keep.
	if parts := strings.Split(name, "."); len(parts) == 4 && parts[2] == "compacted" {
		y, err := strconv.ParseInt(parts[1], 10, 64)
		return err == nil && y < keep
	}
	return false
}
