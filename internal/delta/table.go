package delta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/silt-dev/silt/internal/blob"
)

// Errors returned (wrapped) by the log layer. Check them with errors.Is.
var (
	// ErrNotATable: the location has no _delta_log or no commits.
	ErrNotATable = errors.New("delta: not a Delta table")
	// ErrCorrupt: a log file cannot be parsed or the log is inconsistent
	// (version gaps, no protocol/metaData after replay, invalid actions).
	ErrCorrupt = errors.New("delta: corrupt log")
	// ErrVersionNotFound: the requested version (or timestamp) cannot be
	// reconstructed: it is newer than the latest commit or older than the
	// retained log.
	ErrVersionNotFound = errors.New("delta: version not found")
	// ErrUnsupportedFeature: the table uses a protocol version or table
	// feature silt does not implement. The message names the feature.
	ErrUnsupportedFeature = errors.New("unsupported feature")
)

// EngineInfo is written as commitInfo.engineInfo.
const EngineInfo = "silt/0.1.0"

// Table is a Delta table at a key prefix of a blob.Store. It is safe for
// concurrent use. Its latest snapshot is cached process-wide per (store,
// root) (cache.go), so Table values are cheap: making a new one for every
// read still reads only the new part of the log.
type Table struct {
	store blob.Store
	root  string
	now   func() time.Time // injectable clock (tests)
	newID func() string    // injectable txnId source (tests)

	cache atomic.Pointer[logCache] // this table's entry of the snapshot cache (nil: not looked up yet)
}

// NewTable returns the table rooted at root ("" = the store root). It does
// not touch the store.
func NewTable(store blob.Store, root string) *Table {
	return &Table{store: store, root: strings.Trim(root, "/"), now: time.Now, newID: newUUID}
}

// Root is the key prefix of the table ("" = store root).
func (t *Table) Root() string { return t.root }

// Store is the blob store holding the table.
func (t *Table) Store() blob.Store { return t.store }

// SetClock replaces the clock used for commit timestamps, tombstone ages
// and log cleanup (tests).
func (t *Table) SetClock(now func() time.Time) { t.now = now }

func (t *Table) logDir() string { return blob.Join(t.root, "_delta_log") + "/" }

// CommitKey is the blob key of the JSON commit for version v.
func (t *Table) CommitKey(v int64) string { return t.logDir() + fmt.Sprintf("%020d.json", v) }

func (t *Table) checkpointKey(v int64) string {
	return t.logDir() + fmt.Sprintf("%020d.checkpoint.parquet", v)
}

func (t *Table) lastCheckpointKey() string { return t.logDir() + "_last_checkpoint" }

// ObjectKey maps a path from the log (add.path, remove.path, cdc.path;
// URI-encoded, relative to the table root) to a blob key. Absolute URIs are
// not supported by the blob layer and are rejected.
func (t *Table) ObjectKey(logPath string) (string, error) {
	p, err := DecodePath(logPath)
	if err != nil {
		return "", err
	}
	if strings.Contains(p, "://") || strings.HasPrefix(p, "/") || strings.HasPrefix(logPath, "file:") {
		return "", fmt.Errorf("delta: absolute file path %q is not supported", logPath)
	}
	return blob.Join(t.root, p), nil
}

// DecodePath URI-decodes a path as stored in the log (RFC 2396: "%20" is a
// space, "+" stays "+").
func DecodePath(logPath string) (string, error) {
	p, err := url.PathUnescape(logPath)
	if err != nil {
		return "", fmt.Errorf("delta: decode path %q: %w", logPath, err)
	}
	return p, nil
}

// EncodePath URI-encodes a relative file path for add.path/remove.path,
// segment by segment ("/" separators are kept).
func EncodePath(relPath string) string {
	segs := strings.Split(relPath, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// ParseActions decodes one JSON commit file: newline-delimited actions.
// Blank lines are skipped; lines with no known action (future action kinds)
// are dropped; unknown fields are ignored. A malformed line is an error
// wrapping ErrCorrupt. The result does not reference data.
func ParseActions(data []byte) ([]Action, error) {
	var out []Action
	line := 0
	for len(data) > 0 {
		line++
		var l []byte
		if i := indexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			l, data = data, nil
		}
		l = trimSpace(l)
		if len(l) == 0 {
			continue
		}
		a, err := parseAction(l)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrCorrupt, line, err)
		}
		n := a.count()
		if n == 0 {
			continue // unknown action kind: ignored for forward compatibility
		}
		if n > 1 {
			return nil, fmt.Errorf("%w: line %d: more than one action in a line", ErrCorrupt, line)
		}
		if err := a.check(); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrCorrupt, line, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// parseAction decodes one action line. Action names are matched exactly
// (encoding/json alone would also take "Add" or "COMMITINFO" for a known
// action; the protocol's names are case-sensitive, so those are unknown
// actions and ignored). A null action value counts as absent.
func parseAction(l []byte) (Action, error) {
	var a Action
	var top map[string]json.RawMessage
	if err := json.Unmarshal(l, &top); err != nil {
		return a, err
	}
	for k, v := range top {
		if string(v) == "null" {
			continue
		}
		var dst any
		switch k {
		case "add":
			a.Add = new(Add)
			dst = a.Add
		case "remove":
			a.Remove = new(Remove)
			dst = a.Remove
		case "metaData":
			a.MetaData = new(Metadata)
			dst = a.MetaData
		case "protocol":
			a.Protocol = new(Protocol)
			dst = a.Protocol
		case "txn":
			a.Txn = new(SetTransaction)
			dst = a.Txn
		case "commitInfo":
			dst = &a.CommitInfo
		case "cdc":
			a.CDC = new(CDC)
			dst = a.CDC
		case "domainMetadata":
			a.DomainMetadata = new(DomainMetadata)
			dst = a.DomainMetadata
		default:
			continue // unknown action kind
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return a, fmt.Errorf("%s: %v", k, err)
		}
	}
	return a, nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r' || b[len(b)-1] == '\n') {
		b = b[:len(b)-1]
	}
	return b
}

func (a *Action) count() int {
	n := 0
	for _, set := range []bool{a.Add != nil, a.Remove != nil, a.MetaData != nil, a.Protocol != nil,
		a.Txn != nil, a.CommitInfo != nil, a.CDC != nil, a.DomainMetadata != nil} {
		if set {
			n++
		}
	}
	return n
}

// check enforces the fields a reader relies on.
func (a *Action) check() error {
	switch {
	case a.Add != nil:
		if a.Add.Path == "" {
			return errors.New("add without path")
		}
	case a.Remove != nil:
		if a.Remove.Path == "" {
			return errors.New("remove without path")
		}
	case a.Txn != nil:
		if a.Txn.AppID == "" {
			return errors.New("txn without appId")
		}
	case a.DomainMetadata != nil:
		if a.DomainMetadata.Domain == "" {
			return errors.New("domainMetadata without domain")
		}
	}
	return nil
}

// MarshalActions encodes actions as a commit file (one JSON line each).
func MarshalActions(actions []Action) ([]byte, error) {
	var buf []byte
	for i := range actions {
		if ci := actions[i].CommitInfo; ci != nil && len(ci) == 0 && actions[i].count() == 1 {
			buf = append(buf, `{"commitInfo":{}}`+"\n"...) // omitempty would drop the action
			continue
		}
		b, err := json.Marshal(&actions[i])
		if err != nil {
			return nil, fmt.Errorf("delta: encode action: %w", err)
		}
		buf = append(buf, b...)
		buf = append(buf, '\n')
	}
	return buf, nil
}

// logFile is one parsed file name in _delta_log.
type logFile struct {
	key     string
	version int64
	kind    fileKind
	part    int // multi-part checkpoint: part number (1-based)
	parts   int // multi-part checkpoint: number of parts
	modTime time.Time
	size    int64
}

type fileKind int

const (
	kindCommit fileKind = iota
	kindCheckpoint
	kindV2Checkpoint
	kindOther
)

// parseLogName classifies a file name (without directory) in _delta_log.
func parseLogName(name string) (v int64, kind fileKind, part, parts int, ok bool) {
	if len(name) < 21 || name[20] != '.' {
		return 0, kindOther, 0, 0, false
	}
	v, err := strconv.ParseInt(name[:20], 10, 64)
	if err != nil || v < 0 {
		return 0, kindOther, 0, 0, false
	}
	rest := name[21:]
	switch {
	case rest == "json":
		return v, kindCommit, 0, 0, true
	case rest == "checkpoint.parquet":
		return v, kindCheckpoint, 1, 1, true
	case strings.HasPrefix(rest, "checkpoint."):
		mid := strings.TrimPrefix(rest, "checkpoint.")
		f := strings.Split(mid, ".")
		if len(f) == 3 && f[2] == "parquet" && len(f[0]) == 10 && len(f[1]) == 10 {
			p, err1 := strconv.Atoi(f[0])
			n, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && p >= 1 && p <= n {
				return v, kindCheckpoint, p, n, true
			}
		}
		if len(f) == 2 && (f[1] == "json" || f[1] == "parquet") {
			return v, kindV2Checkpoint, 0, 0, true
		}
	}
	// .crc, compactions and anything else with a version prefix: listed
	// for cleanup only.
	return v, kindOther, 0, 0, true
}

// listing is the parsed content of _delta_log.
type listing struct {
	commits     map[int64]logFile
	checkpoints []checkpointSet // complete sets only, ascending by version
	v2          map[int64]bool  // versions with a V2 (UUID) checkpoint
	maxVersion  int64           // highest commit or checkpoint version; -1 if none
	all         []logFile       // every recognised file (cleanup)
}

// checkpointSet is one complete classic checkpoint (single or multi-part).
type checkpointSet struct {
	version int64
	files   []logFile // ordered by part
	modTime time.Time
}

func (t *Table) list(ctx context.Context) (*listing, error) { return t.listFrom(ctx, 0) }

// listFrom lists the log files of versions >= from (from <= 0: the whole
// log) with blob.ListFrom; the non-version files (_last_checkpoint, ...)
// sort after every version and are always listed.
func (t *Table) listFrom(ctx context.Context, from int64) (*listing, error) {
	var infos []blob.Info
	var err error
	if from <= 0 {
		infos, err = t.store.List(ctx, t.logDir())
	} else {
		infos, err = blob.ListFrom(ctx, t.store, t.logDir(), t.logDir()+fmt.Sprintf("%020d", from))
	}
	if err != nil {
		return nil, fmt.Errorf("delta: list log: %w", err)
	}
	l := &listing{commits: map[int64]logFile{}, v2: map[int64]bool{}, maxVersion: -1}
	type setKey struct {
		v     int64
		parts int
	}
	sets := map[setKey][]logFile{}
	for _, in := range infos {
		name := strings.TrimPrefix(in.Key, t.logDir())
		if strings.Contains(name, "/") {
			continue // _sidecars/, _staged_commits/ ...
		}
		v, kind, part, parts, ok := parseLogName(name)
		if !ok {
			continue
		}
		f := logFile{key: in.Key, version: v, kind: kind, part: part, parts: parts, modTime: in.ModTime, size: in.Size}
		l.all = append(l.all, f)
		switch kind {
		case kindCommit:
			l.commits[v] = f
		case kindCheckpoint:
			k := setKey{v, parts}
			sets[k] = append(sets[k], f)
		case kindV2Checkpoint:
			l.v2[v] = true
		}
	}
	for k, files := range sets {
		sort.Slice(files, func(i, j int) bool { return files[i].part < files[j].part })
		complete := len(files) == k.parts
		for i, f := range files {
			if f.part != i+1 {
				complete = false
			}
		}
		if !complete {
			continue // incomplete multi-part set: ignored
		}
		cs := checkpointSet{version: k.v, files: files}
		for _, f := range files {
			if f.modTime.After(cs.modTime) {
				cs.modTime = f.modTime
			}
		}
		l.checkpoints = append(l.checkpoints, cs)
	}
	// Ascending by version; for equal versions prefer single-file sets last
	// (tried first when walking backwards).
	sort.Slice(l.checkpoints, func(i, j int) bool {
		a, b := l.checkpoints[i], l.checkpoints[j]
		if a.version != b.version {
			return a.version < b.version
		}
		return len(a.files) > len(b.files)
	})
	for v := range l.commits {
		l.maxVersion = max(l.maxVersion, v)
	}
	for _, c := range l.checkpoints {
		l.maxVersion = max(l.maxVersion, c.version)
	}
	if l.maxVersion < 0 {
		return nil, fmt.Errorf("%w: no commits under %q", ErrNotATable, t.logDir())
	}
	return l, nil
}

// LatestVersion returns the newest version in the log. When a version is
// known to exist (cached), only the log from it on is listed.
func (t *Table) LatestVersion(ctx context.Context) (int64, error) {
	if c := t.entry(); c != nil {
		if v := c.known.Load(); v > 0 {
			return t.latestFrom(ctx, v)
		}
	}
	l, err := t.list(ctx)
	if err != nil {
		return -1, err
	}
	return l.maxVersion, nil
}

// latestFrom returns the newest version, listing from version known (whose
// commit is expected to exist); if that commit is not listed, the whole
// log is.
func (t *Table) latestFrom(ctx context.Context, known int64) (int64, error) {
	if known > 0 {
		l, err := t.listFrom(ctx, known)
		if err == nil {
			if _, ok := l.commits[known]; ok {
				return l.maxVersion, nil
			}
		}
	}
	l, err := t.list(ctx)
	if err != nil {
		return -1, err
	}
	return l.maxVersion, nil
}

// ReadCommit returns the actions of the JSON commit for version (unknown
// actions dropped). A missing commit wraps ErrVersionNotFound.
func (t *Table) ReadCommit(ctx context.Context, version int64) ([]Action, error) {
	b, err := t.store.Get(ctx, t.CommitKey(version))
	if errors.Is(err, blob.ErrNotExist) {
		return nil, fmt.Errorf("delta: read commit %d: %w", version, ErrVersionNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("delta: read commit %d: %w", version, err)
	}
	acts, err := ParseActions(b)
	if err != nil {
		return nil, fmt.Errorf("delta: read commit %d: %w", version, err)
	}
	return acts, nil
}

// CommitInfoEntry is one entry of History.
type CommitInfoEntry struct {
	Version    int64
	Timestamp  time.Time      // commit time: inCommitTimestamp or file mtime
	CommitInfo map[string]any // nil when the commit has none
}

// History returns up to limit commits (limit <= 0: all retained), newest
// first.
func (t *Table) History(ctx context.Context, limit int) ([]CommitInfoEntry, error) {
	// With a limit, list only the newest commits (a table that commits
	// every second has millions of log files over its retention).
	from := int64(0)
	if limit > 0 {
		if snap, err := t.Snapshot(ctx); err == nil {
			from = max(0, snap.Version-int64(limit)+1)
		}
	}
	l, err := t.listFrom(ctx, from)
	if err != nil {
		return nil, err
	}
	versions := make([]int64, 0, len(l.commits))
	for v := range l.commits {
		versions = append(versions, v)
	}
	sort.Slice(versions, func(i, j int) bool { return versions[i] > versions[j] })
	if limit > 0 && len(versions) > limit {
		versions = versions[:limit]
	}
	out := make([]CommitInfoEntry, 0, len(versions))
	for _, v := range versions {
		acts, err := t.ReadCommit(ctx, v)
		if err != nil {
			return nil, err
		}
		e := CommitInfoEntry{Version: v, Timestamp: l.commits[v].modTime}
		for _, a := range acts {
			if a.CommitInfo != nil {
				e.CommitInfo = a.CommitInfo
				if ict, ok := int64Field(a.CommitInfo, "inCommitTimestamp"); ok {
					e.Timestamp = time.UnixMilli(ict)
				}
				break
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// int64Field reads an integer from decoded JSON (float64 or json.Number).
func int64Field(m map[string]any, k string) (int64, bool) {
	switch v := m[k].(type) {
	case float64:
		return int64(v), true
	case json.Number:
		n, err := v.Int64()
		return n, err == nil
	case int64:
		return v, true
	case int:
		return int64(v), true
	}
	return 0, false
}
