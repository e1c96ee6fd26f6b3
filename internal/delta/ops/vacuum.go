package ops

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/silt-dev/silt/internal/delta"
)

// DefaultRetention is delta.deletedFileRetentionDuration's default.
const DefaultRetention = 7 * 24 * time.Hour

// ErrRetentionTooShort is returned by Vacuum when the requested retention
// is shorter than the table's and Force is not set.
var ErrRetentionTooShort = errors.New("ops: vacuum: retention shorter than the table's deletedFileRetentionDuration")

// VacuumOptions tune Vacuum.
type VacuumOptions struct {
	// Retain overrides the table's delta.deletedFileRetentionDuration
	// (default 7 days) when > 0. A shorter value than the table's is
	// refused unless Force is set: readers of old versions, and writers
	// whose files are not committed yet, would lose files.
	Retain time.Duration
	Force  bool
	// DryRun lists what would be deleted without deleting.
	DryRun bool
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Concurrency of deletes (default GOMAXPROCS, at most 8).
	Concurrency int
}

// VacuumResult lists the files deleted (or, in a dry run, to delete).
type VacuumResult struct {
	Retention time.Duration
	Cutoff    time.Time
	// Files are keys relative to the table root, sorted.
	Files  []string
	Bytes  int64
	DryRun bool
	// Kept counts data files spared because a version inside the
	// retention window (or the current one) references them, or because
	// they are newer than the cutoff.
	Referenced, Young int
}

// Vacuum deletes files under the table that no version inside the
// retention window references and that are older than the window.
//
// A file is kept when it is live in the current snapshot, when a tombstone
// for it is younger than the cutoff (or has no deletionTimestamp), when an
// add or remove in any commit after the last version committed at or before
// the cutoff names it (so time travel to every version inside the window
// keeps working even if deletion timestamps are skewed), or when the file
// itself was modified after the cutoff (a writer may be about to commit
// it). _delta_log and every directory or file whose name starts with "_"
// or "." is never touched, except partition directories such as
// "_col=1". The writer protocol check (CanWrite) must pass.
func Vacuum(ctx context.Context, t *delta.Table, opts VacuumOptions) (*VacuumResult, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = min(runtime.GOMAXPROCS(0), 8)
	}
	snap, err := t.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("ops: vacuum: %w", err)
	}
	if err := snap.CanWrite(); err != nil {
		return nil, fmt.Errorf("ops: vacuum: %w", err)
	}
	tableRet := DefaultRetention
	if v, ok := snap.Config()["delta.deletedFileRetentionDuration"]; ok {
		if tableRet, err = ParseInterval(v); err != nil {
			return nil, fmt.Errorf("ops: vacuum: delta.deletedFileRetentionDuration: %w", err)
		}
	}
	ret := tableRet
	if opts.Retain > 0 {
		ret = opts.Retain
	} else if opts.Retain < 0 {
		return nil, fmt.Errorf("ops: vacuum: negative retention %s", opts.Retain)
	}
	if ret < tableRet && !opts.Force {
		return nil, fmt.Errorf("%w: %s < %s; readers of versions in between, and uncommitted writes, could lose files (use force to override)", ErrRetentionTooShort, ret, tableRet)
	}
	now := opts.Now()
	cutoff := now.Add(-ret)
	res := &VacuumResult{Retention: ret, Cutoff: cutoff, DryRun: opts.DryRun}

	keep := map[string]bool{}
	addPath := func(p string) error {
		d, err := delta.DecodePath(p)
		if err != nil {
			return err
		}
		if strings.Contains(d, "://") || strings.HasPrefix(d, "/") {
			return fmt.Errorf("ops: vacuum: absolute file path %q in the log is not supported", p)
		}
		keep[d] = true
		return nil
	}
	for _, f := range snap.Files() {
		if err := addPath(f.Path); err != nil {
			return nil, err
		}
	}
	for _, r := range snap.Tombstones() {
		if r.DeletionTimestamp == nil || *r.DeletionTimestamp > cutoff.UnixMilli() {
			if err := addPath(r.Path); err != nil {
				return nil, err
			}
		}
	}
	// Every version inside the window: the files its commits add or remove.
	first, err := firstVersionInWindow(ctx, t, snap, cutoff)
	if err != nil {
		return nil, fmt.Errorf("ops: vacuum: %w", err)
	}
	for v := first; v <= snap.Version; v++ {
		acts, err := t.ReadCommit(ctx, v)
		if err != nil {
			return nil, fmt.Errorf("ops: vacuum: %w", err)
		}
		for _, a := range acts {
			switch {
			case a.Add != nil:
				err = addPath(a.Add.Path)
			case a.Remove != nil:
				err = addPath(a.Remove.Path)
			}
			if err != nil {
				return nil, err
			}
		}
	}

	prefix := ""
	if t.Root() != "" {
		prefix = t.Root() + "/"
	}
	infos, err := t.Store().List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("ops: vacuum: list: %w", err)
	}
	for _, in := range infos {
		rel := strings.TrimPrefix(in.Key, prefix)
		if hidden(rel, snap.PartitionColumns()) {
			continue
		}
		if keep[rel] {
			res.Referenced++
			continue
		}
		if in.ModTime.After(cutoff) {
			res.Young++
			continue
		}
		res.Files = append(res.Files, rel)
		res.Bytes += in.Size
	}
	if opts.DryRun || len(res.Files) == 0 {
		return res, nil
	}
	err = forEach(ctx, opts.Concurrency, len(res.Files), func(ctx context.Context, i int) error {
		if err := t.Store().Delete(ctx, prefix+res.Files[i]); err != nil {
			return fmt.Errorf("ops: vacuum: delete %s: %w", res.Files[i], err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// firstVersionInWindow is the first version committed after the cutoff;
// snap.Version+1 when there is none. When the retained log starts after
// the cutoff it is the oldest retained commit.
func firstVersionInWindow(ctx context.Context, t *delta.Table, snap *delta.Snapshot, cutoff time.Time) (int64, error) {
	if !snap.Timestamp().After(cutoff) {
		return snap.Version + 1, nil // every commit is older than the window
	}
	asOf, err := t.SnapshotAsOf(ctx, cutoff)
	if err == nil {
		return asOf.Version + 1, nil
	}
	if !errors.Is(err, delta.ErrVersionNotFound) {
		return 0, err
	}
	// The cutoff is before the oldest retained commit: walk back to it.
	v := snap.Version
	for v > 0 {
		if _, err := t.ReadCommit(ctx, v-1); err != nil {
			if errors.Is(err, delta.ErrVersionNotFound) {
				break
			}
			return 0, err
		}
		v--
	}
	return v, nil
}

// hidden reports whether a path relative to the table root is outside
// VACUUM's reach: _delta_log, any directory or file whose name starts with
// "_" or ".", except Hive partition directories named after a partition
// column ("_col=value").
func hidden(rel string, partCols []string) bool {
	segs := strings.Split(rel, "/")
	for i, s := range segs {
		if s == "" {
			continue
		}
		if s[0] != '_' && s[0] != '.' {
			continue
		}
		if i < len(segs)-1 && s[0] == '_' {
			part := false
			for _, c := range partCols {
				if strings.HasPrefix(s, c+"=") {
					part = true
				}
			}
			if part {
				continue
			}
		}
		return true
	}
	return false
}

// ParseInterval parses a Delta interval table property such as
// "interval 7 days" or "168 hours" (Spark's CalendarInterval syntax: a
// sequence of "N unit" pairs, optionally after "interval").
func ParseInterval(s string) (time.Duration, error) {
	f := strings.Fields(strings.ToLower(strings.TrimSpace(s)))
	if len(f) > 0 && f[0] == "interval" {
		f = f[1:]
	}
	if len(f) == 0 || len(f)%2 != 0 {
		return 0, fmt.Errorf("invalid interval %q", s)
	}
	var d time.Duration
	for i := 0; i < len(f); i += 2 {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid interval %q", s)
		}
		units := map[string]time.Duration{"week": 7 * 24 * time.Hour, "day": 24 * time.Hour, "hour": time.Hour,
			"minute": time.Minute, "second": time.Second, "millisecond": time.Millisecond, "microsecond": time.Microsecond}
		u, ok := units[strings.TrimSuffix(f[i+1], "s")]
		if !ok {
			return 0, fmt.Errorf("invalid interval unit in %q", s)
		}
		d += time.Duration(n) * u
	}
	return d, nil
}
