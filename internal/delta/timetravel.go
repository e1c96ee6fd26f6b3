package delta

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// commitTimes returns the monotonic commit timestamps of the retained,
// reconstructable commits in ascending version order. A commit's time is
// its inCommitTimestamp from the enablement version on (when in-commit
// timestamps are enabled), else the file modification time; like Spark, a
// time not after its predecessor's becomes predecessor+1ms.
func (t *Table) commitTimes(ctx context.Context, l *listing, latest *Snapshot) ([]int64, []time.Time, error) {
	versions := make([]int64, 0, len(l.commits))
	for v := range l.commits {
		versions = append(versions, v)
	}
	sort.Slice(versions, func(i, j int) bool { return versions[i] < versions[j] })
	// Earliest reconstructable: version 0, or the oldest checkpoint whose
	// following commits are all present.
	earliest := int64(-1)
	if _, ok := l.commits[0]; ok {
		earliest = 0
	} else {
		for _, cp := range l.checkpoints {
			if _, ok := l.commits[cp.version]; ok {
				earliest = cp.version
				break
			}
		}
	}
	if earliest < 0 {
		return nil, nil, fmt.Errorf("delta: no reconstructable version: %w", ErrVersionNotFound)
	}
	ictFrom := int64(-1)
	if latest.inCommitTimestampsEnabled() {
		ictFrom = latest.configInt("delta.inCommitTimestampEnablementVersion", 0)
	}
	var outV []int64
	var outT []time.Time
	for _, v := range versions {
		if v < earliest {
			continue
		}
		ts := l.commits[v].modTime
		if ictFrom >= 0 && v >= ictFrom {
			acts, err := t.ReadCommit(ctx, v)
			if err != nil {
				return nil, nil, err
			}
			for _, a := range acts {
				if a.CommitInfo != nil {
					if ict, ok := int64Field(a.CommitInfo, "inCommitTimestamp"); ok {
						ts = time.UnixMilli(ict)
					}
					break
				}
			}
		}
		if n := len(outT); n > 0 && !ts.After(outT[n-1]) {
			ts = outT[n-1].Add(time.Millisecond)
		}
		outV = append(outV, v)
		outT = append(outT, ts)
	}
	return outV, outT, nil
}

// SnapshotAsOf returns the snapshot of the latest version whose commit time
// is <= ts (Spark's rule, on monotonic commit times). A ts before the
// earliest retained commit, or after the latest commit, wraps
// ErrVersionNotFound.
func (t *Table) SnapshotAsOf(ctx context.Context, ts time.Time) (*Snapshot, error) {
	l, err := t.list(ctx)
	if err != nil {
		return nil, err
	}
	hint := t.readLastCheckpoint(ctx)
	rr, err := t.snapshotFromListing(ctx, l, -1, hint, false)
	if err != nil {
		return nil, err
	}
	latest := rr.snap
	versions, times, err := t.commitTimes(ctx, l, latest)
	if err != nil {
		return nil, err
	}
	if len(versions) == 0 || ts.Before(times[0]) {
		return nil, fmt.Errorf("delta: timestamp %s is before the earliest retained commit: %w", ts.UTC().Format(time.RFC3339Nano), ErrVersionNotFound)
	}
	if ts.After(times[len(times)-1]) {
		return nil, fmt.Errorf("delta: timestamp %s is after the latest commit (version %d at %s): %w",
			ts.UTC().Format(time.RFC3339Nano), versions[len(versions)-1], times[len(times)-1].UTC().Format(time.RFC3339Nano), ErrVersionNotFound)
	}
	i := sort.Search(len(times), func(i int) bool { return times[i].After(ts) }) - 1
	v := versions[i]
	if v == latest.Version {
		return latest, nil
	}
	rr, err = t.snapshotFromListing(ctx, l, v, hint, false)
	if err != nil {
		return nil, err
	}
	return rr.snap, nil
}
