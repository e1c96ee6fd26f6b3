package delta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

func newUUID() string { return uuid.NewString() }

// Snapshot is the state of a table at one version: the result of log
// replay. It is immutable; share it freely between goroutines.
type Snapshot struct {
	Version  int64
	Protocol *Protocol
	Metadata *Metadata
	// CommitInfo of Version, when its JSON commit is still present.
	CommitInfo map[string]any

	table      *Table
	schema     *StructType
	files      []*Add    // live, sorted by path then DV id
	tombstones []*Remove // sorted by path
	txns       map[string]*SetTransaction
	domains    map[string]*DomainMetadata
	timestamp  time.Time
	// checkpointVersion is the checkpoint replay started from (-1: none).
	checkpointVersion int64
}

// fileKey identifies a logical file: (decoded path, DV unique id).
type fileKey struct {
	path string
	dv   string
}

// replayState accumulates actions in log order. Later actions win, which
// gives the protocol's "newest action for a key wins" rule.
type replayState struct {
	protocol   *Protocol
	metadata   *Metadata
	files      map[fileKey]*Add
	tombstones map[fileKey]*Remove
	txns       map[string]*SetTransaction
	domains    map[string]*DomainMetadata
}

func newReplayState() *replayState {
	return &replayState{
		files:      map[fileKey]*Add{},
		tombstones: map[fileKey]*Remove{},
		txns:       map[string]*SetTransaction{},
		domains:    map[string]*DomainMetadata{},
	}
}

func keyOf(path string, dv *DeletionVector) fileKey {
	if p, err := DecodePath(path); err == nil {
		path = p
	}
	return fileKey{path: path, dv: dv.UniqueID()}
}

// apply applies one action. commitInfo and cdc do not change state.
func (r *replayState) apply(a *Action) {
	switch {
	case a.Add != nil:
		k := keyOf(a.Add.Path, a.Add.DeletionVector)
		r.files[k] = a.Add
		delete(r.tombstones, k)
	case a.Remove != nil:
		k := keyOf(a.Remove.Path, a.Remove.DeletionVector)
		delete(r.files, k)
		r.tombstones[k] = a.Remove
	case a.MetaData != nil:
		r.metadata = a.MetaData
	case a.Protocol != nil:
		r.protocol = a.Protocol
	case a.Txn != nil:
		r.txns[a.Txn.AppID] = a.Txn
	case a.DomainMetadata != nil:
		if a.DomainMetadata.Removed {
			delete(r.domains, a.DomainMetadata.Domain)
		} else {
			r.domains[a.DomainMetadata.Domain] = a.DomainMetadata
		}
	}
}

// Replay builds a snapshot from already-parsed actions (pure; used by the
// fuzzer and tests). commits[i] holds the actions of version base+i+1;
// checkpoint holds the checkpoint actions at version base (nil when base is
// -1, i.e. replay from version 0).
func Replay(checkpoint []Action, base int64, commits [][]Action) (*Snapshot, error) {
	r := newReplayState()
	for i := range checkpoint {
		r.apply(&checkpoint[i])
	}
	var ci map[string]any
	for _, c := range commits {
		ci = nil
		for i := range c {
			if c[i].CommitInfo != nil {
				ci = c[i].CommitInfo
			}
			r.apply(&c[i])
		}
	}
	return r.snapshot(base+int64(len(commits)), ci)
}

func (r *replayState) snapshot(version int64, commitInfo map[string]any) (*Snapshot, error) {
	if r.protocol == nil {
		return nil, fmt.Errorf("%w: no protocol action at version %d", ErrCorrupt, version)
	}
	if r.metadata == nil {
		return nil, fmt.Errorf("%w: no metaData action at version %d", ErrCorrupt, version)
	}
	s := &Snapshot{
		Version:           version,
		Protocol:          r.protocol,
		Metadata:          r.metadata,
		CommitInfo:        commitInfo,
		txns:              r.txns,
		domains:           r.domains,
		checkpointVersion: -1,
	}
	s.files = make([]*Add, 0, len(r.files))
	for _, a := range r.files {
		s.files = append(s.files, a)
	}
	sort.Slice(s.files, func(i, j int) bool {
		if s.files[i].Path != s.files[j].Path {
			return s.files[i].Path < s.files[j].Path
		}
		return s.files[i].DeletionVector.UniqueID() < s.files[j].DeletionVector.UniqueID()
	})
	s.tombstones = make([]*Remove, 0, len(r.tombstones))
	for _, rm := range r.tombstones {
		s.tombstones = append(s.tombstones, rm)
	}
	sort.Slice(s.tombstones, func(i, j int) bool {
		if s.tombstones[i].Path != s.tombstones[j].Path {
			return s.tombstones[i].Path < s.tombstones[j].Path
		}
		return s.tombstones[i].DeletionVector.UniqueID() < s.tombstones[j].DeletionVector.UniqueID()
	})
	return s, nil
}

// Schema is the parsed table schema; nil if schemaString does not parse
// (Snapshot construction fails in that case, so only for Replay results).
func (s *Snapshot) Schema() *StructType { return s.schema }

// PartitionColumns are the partition column names (logical names).
func (s *Snapshot) PartitionColumns() []string { return s.Metadata.PartitionColumns }

// Config is metaData.configuration (never nil). Do not modify it.
func (s *Snapshot) Config() map[string]string {
	if s.Metadata.Configuration == nil {
		return map[string]string{}
	}
	return s.Metadata.Configuration
}

// Files are the live add actions, sorted by path (paths as in the log:
// URI-encoded; see DecodePath and Table.ObjectKey). Do not modify them.
func (s *Snapshot) Files() []*Add { return s.files }

// Tombstones are the remove actions still in the state (not yet dropped by
// a checkpoint), sorted by path.
func (s *Snapshot) Tombstones() []*Remove { return s.tombstones }

// TxnVersion is the last txn version of appID, if any.
func (s *Snapshot) TxnVersion(appID string) (int64, bool) {
	t, ok := s.txns[appID]
	if !ok {
		return 0, false
	}
	return t.Version, true
}

// Txns returns every txn action in the state, by appId.
func (s *Snapshot) Txns() map[string]*SetTransaction { return s.txns }

// DomainMetadata returns the live domain metadata, by domain.
func (s *Snapshot) DomainMetadata() map[string]*DomainMetadata { return s.domains }

// Timestamp is the commit time of Version (inCommitTimestamp when present,
// else the commit file's modification time).
func (s *Snapshot) Timestamp() time.Time { return s.timestamp }

// Table is the table this snapshot was read from (nil for Replay results).
func (s *Snapshot) Table() *Table { return s.table }

// ColumnMappingMode is "none", "name" or "id".
func (s *Snapshot) ColumnMappingMode() string {
	m := s.Config()["delta.columnMapping.mode"]
	if m == "" {
		return "none"
	}
	return strings.ToLower(m)
}

// configDuration parses an interval table property such as
// "interval 30 days" (Spark's CalendarInterval syntax), or def when unset.
func (s *Snapshot) configDuration(key string, def time.Duration) (time.Duration, error) {
	v, ok := s.Config()[key]
	if !ok {
		return def, nil
	}
	return parseInterval(v)
}

func (s *Snapshot) configInt(key string, def int64) int64 {
	v, ok := s.Config()[key]
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return def
	}
	return n
}

func (s *Snapshot) configBool(key string, def bool) bool {
	v, ok := s.Config()[key]
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return def
	}
	return b
}

// parseInterval parses "interval N unit [N unit...]" or "N unit".
func parseInterval(s string) (time.Duration, error) {
	f := strings.Fields(strings.ToLower(strings.TrimSpace(s)))
	if len(f) > 0 && f[0] == "interval" {
		f = f[1:]
	}
	if len(f) == 0 || len(f)%2 != 0 {
		return 0, fmt.Errorf("delta: invalid interval %q", s)
	}
	var d time.Duration
	for i := 0; i < len(f); i += 2 {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("delta: invalid interval %q", s)
		}
		var unit time.Duration
		switch strings.TrimSuffix(f[i+1], "s") {
		case "week":
			unit = 7 * 24 * time.Hour
		case "day":
			unit = 24 * time.Hour
		case "hour":
			unit = time.Hour
		case "minute":
			unit = time.Minute
		case "second":
			unit = time.Second
		case "millisecond":
			unit = time.Millisecond
		case "microsecond":
			unit = time.Microsecond
		default:
			return 0, fmt.Errorf("delta: invalid interval unit in %q", s)
		}
		d += time.Duration(n) * unit
	}
	return d, nil
}

// Snapshot returns the latest snapshot. With the process-wide cache (see
// cache.go) it lists only the log after the cached state and applies the
// new commits on top; the result is the same as a full replay.
func (t *Table) Snapshot(ctx context.Context) (*Snapshot, error) {
	return t.snapshotAt(ctx, -1)
}

// SnapshotAt returns the snapshot at version. Versions older than the
// cached one are replayed from the newest checkpoint at or below them.
func (t *Table) SnapshotAt(ctx context.Context, version int64) (*Snapshot, error) {
	if version < 0 {
		return nil, fmt.Errorf("delta: snapshot at %d: %w", version, ErrVersionNotFound)
	}
	return t.snapshotAt(ctx, version)
}

// replayResult is a snapshot with the replay state it came from.
type replayResult struct {
	snap *Snapshot
	r    *replayState
	cp   *checkpointSet // the checkpoint replay started from; nil: version 0
}

// errPartial: a listing that starts after version 0 cannot reconstruct the
// version by itself; the caller lists the whole log.
var errPartial = errors.New("delta: partial listing is not enough")

// coldSnapshot replays version (-1 = latest) with nothing cached. When
// _last_checkpoint names a version at or below the target, only the log
// from that version on is listed; if that part does not reconstruct the
// target (stale or corrupt hint, unreadable checkpoint), the whole log is.
func (t *Table) coldSnapshot(ctx context.Context, version int64) (*replayResult, *listing, error) {
	hint := t.readLastCheckpoint(ctx)
	if hint != nil && hint.Version > 0 && (version < 0 || version >= hint.Version) {
		if l, err := t.listFrom(ctx, hint.Version); err == nil {
			if rr, err := t.snapshotFromListing(ctx, l, version, hint, true); err == nil {
				return rr, l, nil
			}
		}
	}
	l, err := t.list(ctx)
	if err != nil {
		return nil, nil, err
	}
	rr, err := t.snapshotFromListing(ctx, l, version, hint, false)
	if err != nil {
		return nil, nil, err
	}
	return rr, l, nil
}

// snapshotFromListing replays the log up to version (-1 = latest). It starts
// from the newest readable checkpoint <= version; a checkpoint that fails
// to read is skipped in favour of an older one (or plain JSON replay).
// hint is _last_checkpoint (nil: absent). partial: l lists only the log
// from some version on; when no checkpoint in it works, errPartial is
// returned instead of trying a replay from version 0.
func (t *Table) snapshotFromListing(ctx context.Context, l *listing, version int64, hint *lastCheckpoint, partial bool) (*replayResult, error) {
	if version < 0 {
		version = l.maxVersion
	}
	if version > l.maxVersion {
		if partial {
			return nil, errPartial
		}
		return nil, fmt.Errorf("delta: snapshot at %d: %w (latest is %d)", version, ErrVersionNotFound, l.maxVersion)
	}
	cands := make([]checkpointSet, 0, len(l.checkpoints))
	for i := len(l.checkpoints) - 1; i >= 0; i-- {
		if l.checkpoints[i].version <= version {
			cands = append(cands, l.checkpoints[i])
		}
	}
	// The _last_checkpoint hint only breaks ties (e.g. prefer the set it
	// names when both a single-file and a multi-part checkpoint exist).
	if hint != nil && hint.Parts != nil {
		sort.SliceStable(cands, func(i, j int) bool {
			if cands[i].version != cands[j].version {
				return cands[i].version > cands[j].version
			}
			return len(cands[i].files) == int(*hint.Parts) && len(cands[j].files) != int(*hint.Parts)
		})
	}
	var firstErr error
	for i := range cands {
		cp := &cands[i]
		if err := l.checkContiguous(cp.version+1, version); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		acts, err := t.readCheckpoint(ctx, *cp)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		return t.replayFrom(ctx, l, acts, cp, version)
	}
	if partial {
		return nil, errPartial
	}
	if err := l.checkContiguous(0, version); err != nil {
		if firstErr != nil {
			return nil, firstErr
		}
		if l.v2[version] || hasV2Before(l, version) {
			return nil, fmt.Errorf("delta: table requires reader feature %q which silt does not support: %w", "v2Checkpoint", ErrUnsupportedFeature)
		}
		return nil, err
	}
	return t.replayFrom(ctx, l, nil, nil, version)
}

func hasV2Before(l *listing, v int64) bool {
	for cv := range l.v2 {
		if cv <= v {
			return true
		}
	}
	return false
}

// checkContiguous checks that commits from..to all exist. A missing first
// commit means the log was cleaned up (ErrVersionNotFound); a missing later
// one is a gap (ErrCorrupt).
func (l *listing) checkContiguous(from, to int64) error {
	for v := from; v <= to; v++ {
		if _, ok := l.commits[v]; ok {
			continue
		}
		if v == from {
			return fmt.Errorf("delta: cannot reconstruct version %d: commit %d is missing and no checkpoint covers it: %w", to, v, ErrVersionNotFound)
		}
		return fmt.Errorf("%w: versions not contiguous: commit %d is missing", ErrCorrupt, v)
	}
	return nil
}

func (t *Table) replayFrom(ctx context.Context, l *listing, cpActs []Action, cp *checkpointSet, version int64) (*replayResult, error) {
	cpVersion := int64(-1)
	if cp != nil {
		cpVersion = cp.version
	}
	r := newReplayState()
	for i := range cpActs {
		r.apply(&cpActs[i])
	}
	var ci map[string]any
	for v := cpVersion + 1; v <= version; v++ {
		acts, err := t.ReadCommit(ctx, v)
		if err != nil {
			return nil, err
		}
		ci = nil
		for i := range acts {
			if acts[i].CommitInfo != nil {
				ci = acts[i].CommitInfo
			}
			r.apply(&acts[i])
		}
	}
	if cpVersion == version {
		// The commitInfo of the target still comes from its JSON file.
		if acts, err := t.ReadCommit(ctx, version); err == nil {
			for _, a := range acts {
				if a.CommitInfo != nil {
					ci = a.CommitInfo
				}
			}
		}
	}
	s, err := r.snapshot(version, ci)
	if err != nil {
		return nil, fmt.Errorf("delta: snapshot at %d: %w", version, err)
	}
	s.table = t
	s.checkpointVersion = cpVersion
	if err := s.finish(l, nil); err != nil {
		return nil, err
	}
	return &replayResult{snap: s, r: r, cp: cp}, nil
}

// finish sets the timestamp, checks that silt can read the state and
// parses the schema (or takes prevSchema when the metadata is prev's).
func (s *Snapshot) finish(l *listing, prev *Snapshot) error {
	version := s.Version
	if c, ok := l.commits[version]; ok {
		s.timestamp = c.modTime
	} else {
		for _, cp := range l.checkpoints {
			if cp.version == version {
				s.timestamp = cp.modTime
			}
		}
	}
	if s.CommitInfo != nil && s.inCommitTimestampsEnabled() {
		if ict, ok := int64Field(s.CommitInfo, "inCommitTimestamp"); ok {
			s.timestamp = time.UnixMilli(ict)
		}
	}
	if err := s.CanRead(); err != nil {
		return fmt.Errorf("delta: snapshot at %d: %w", version, err)
	}
	if prev != nil && prev.Metadata == s.Metadata && prev.schema != nil {
		s.schema = prev.schema
		return nil
	}
	schema, err := ParseSchema(s.Metadata.SchemaString)
	if err != nil {
		return fmt.Errorf("delta: snapshot at %d: %w: %v", version, ErrCorrupt, err)
	}
	s.schema = schema
	return nil
}

func (s *Snapshot) inCommitTimestampsEnabled() bool {
	return s.configBool("delta.enableInCommitTimestamps", false)
}

// lastCheckpoint is the _last_checkpoint hint.
type lastCheckpoint struct {
	Version       int64  `json:"version"`
	Size          int64  `json:"size"`
	Parts         *int64 `json:"parts,omitempty"`
	SizeInBytes   int64  `json:"sizeInBytes,omitempty"`
	NumOfAddFiles int64  `json:"numOfAddFiles,omitempty"`
	Checksum      string `json:"checksum,omitempty"`
}

// readLastCheckpoint returns the hint, or nil when absent or corrupt (it
// is only a hint: listing is authoritative).
func (t *Table) readLastCheckpoint(ctx context.Context) *lastCheckpoint {
	b, err := t.store.Get(ctx, t.lastCheckpointKey())
	if err != nil {
		return nil
	}
	var lc lastCheckpoint
	if err := json.Unmarshal(b, &lc); err != nil || lc.Version < 0 {
		return nil
	}
	if lc.Checksum != "" {
		if sum, err := lastCheckpointChecksum(b); err != nil || sum != lc.Checksum {
			return nil // corrupt hint
		}
	}
	return &lc
}

// errorsIsAny reports whether err matches any target.
func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
