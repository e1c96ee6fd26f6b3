package delta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/silt-dev/silt/internal/blob"
)

// ErrConflict: a concurrent commit conflicts with this transaction; the
// error is a *ConflictError. Retrying means re-reading the table and
// redoing the work.
var ErrConflict = errors.New("delta: concurrent modification")

// ErrCommitUnknown: the commit write failed in a way that leaves its
// outcome unknown and re-reading did not settle it. The caller must not
// assume either outcome; re-running the same batch is safe when it carries
// a txn (appId, version), which the next attempt will find.
var ErrCommitUnknown = errors.New("delta: commit outcome unknown")

// Conflict kinds (ConflictError.Kind), named as in delta-spark.
const (
	ConflictProtocolChanged        = "ProtocolChanged"
	ConflictMetadataChanged        = "MetadataChanged"
	ConflictConcurrentAppend       = "ConcurrentAppend"
	ConflictConcurrentDeleteRead   = "ConcurrentDeleteRead"
	ConflictConcurrentDeleteDelete = "ConcurrentDeleteDelete"
	ConflictConcurrentTransaction  = "ConcurrentTransaction"
	ConflictDomainMetadata         = "ConcurrentDomainMetadata"
	ConflictTableCreated           = "TableAlreadyExists"
	ConflictTooManyRetries         = "TooManyRetries"
)

// ConflictError reports which rule a winning commit broke.
type ConflictError struct {
	Kind    string
	Version int64  // the winning commit
	Detail  string // e.g. the file path
}

func (e *ConflictError) Error() string {
	s := fmt.Sprintf("delta: %s conflict with commit %d", e.Kind, e.Version)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// Isolation levels written in commitInfo.isolationLevel.
const (
	// WriteSerializable (default): concurrent blind appends do not conflict
	// with this transaction's reads.
	WriteSerializable = "WriteSerializable"
	// Serializable: any concurrent data-changing add conflicts with a
	// transaction that read the whole table.
	Serializable = "Serializable"
)

// MaxCommitAttempts bounds the put-if-absent/rebase loop of one Commit.
const MaxCommitAttempts = 100

// Txn is an optimistic transaction against a snapshot. Build it, then
// Commit once. A Txn is not safe for concurrent use.
type Txn struct {
	table     *Table
	snap      *Snapshot // nil when creating the table
	protocol  *Protocol
	metadata  *Metadata
	adds      []*Add
	removes   []*Remove
	appTxns   map[string]int64
	domains   []*DomainMetadata
	readPaths map[string]bool
	readAll   bool
	isolation string
	committed bool

	postCommitErr error
}

// Begin starts a transaction reading snap (nil: create the table at
// version 0; the transaction must then set protocol and metadata).
func (t *Table) Begin(snap *Snapshot) *Txn {
	return &Txn{table: t, snap: snap, appTxns: map[string]int64{}, readPaths: map[string]bool{}, isolation: WriteSerializable}
}

// SetProtocol sets a new protocol action.
func (tx *Txn) SetProtocol(p *Protocol) { tx.protocol = p }

// SetMetadata sets a new metaData action (schema change, properties).
func (tx *Txn) SetMetadata(m *Metadata) { tx.metadata = m }

// Add adds data files.
func (tx *Txn) Add(adds ...*Add) { tx.adds = append(tx.adds, adds...) }

// Remove removes data files. A missing deletionTimestamp is set (in the
// caller's Remove) at commit.
func (tx *Txn) Remove(rs ...*Remove) { tx.removes = append(tx.removes, rs...) }

// SetAppTxn records the progress of an idempotent writer (txn action). A
// concurrent commit that sets the same appId conflicts.
func (tx *Txn) SetAppTxn(appID string, version int64) { tx.appTxns[appID] = version }

// SetDomainMetadata adds a domainMetadata action (the table must support
// the domainMetadata writer feature, which silt does not implement yet).
func (tx *Txn) SetDomainMetadata(d *DomainMetadata) { tx.domains = append(tx.domains, d) }

// ReadFiles records files (paths as in the log) this transaction's result
// depends on: a concurrent removal of any of them conflicts.
func (tx *Txn) ReadFiles(paths ...string) {
	for _, p := range paths {
		tx.readPaths[keyOf(p, nil).path] = true
	}
}

// ReadWholeTable records that the result depends on the whole table.
func (tx *Txn) ReadWholeTable() { tx.readAll = true }

// SetIsolationLevel selects WriteSerializable (default) or Serializable.
func (tx *Txn) SetIsolationLevel(level string) { tx.isolation = level }

// PostCommitError is the error of the post-commit work (checkpoint, log
// cleanup) of the last successful Commit; the commit itself stands.
func (tx *Txn) PostCommitError() error { return tx.postCommitErr }

// isBlindAppend: only adds, no reads, no removes, no metadata change.
func (tx *Txn) isBlindAppend() bool {
	return !tx.readAll && len(tx.readPaths) == 0 && len(tx.removes) == 0 &&
		tx.metadata == nil && tx.protocol == nil && len(tx.adds) > 0
}

// Commit writes the transaction as the next version and returns it.
//
// Loop: try put-if-absent of readVersion+1; on "exists", read every newer
// commit, apply the conflict rules (a conflict fails with *ConflictError),
// and try again after the newest one, at most MaxCommitAttempts times. The
// commit carries a txnId in commitInfo: after an ambiguous write error the
// version file is re-read, and if it holds our txnId the commit succeeded.
// After success, a checkpoint is written when the version is a multiple of
// delta.checkpointInterval (default 10), followed by expired log cleanup;
// their errors are reported by PostCommitError, not by Commit.
func (tx *Txn) Commit(ctx context.Context, operation string, params map[string]any) (int64, error) {
	if tx.committed {
		return -1, errors.New("delta: transaction already committed")
	}
	t := tx.table
	readVersion := int64(-1)
	if tx.snap != nil {
		readVersion = tx.snap.Version
	}
	if err := tx.validate(); err != nil {
		return -1, err
	}
	txnID := t.newID()
	now := t.now()
	for _, r := range tx.removes {
		if r.DeletionTimestamp == nil {
			ts := now.UnixMilli()
			r.DeletionTimestamp = &ts
		}
	}
	base := readVersion // version our actions are rebased onto
	for attempt := 0; attempt < MaxCommitAttempts; attempt++ {
		if err := ctx.Err(); err != nil {
			return -1, err
		}
		version := base + 1
		data, err := tx.encode(operation, params, readVersion, txnID, t.now())
		if err != nil {
			return -1, err
		}
		err = t.store.PutIfAbsent(ctx, t.CommitKey(version), data)
		if err != nil && !errors.Is(err, blob.ErrExists) {
			// Ambiguous: the object may or may not have been written.
			// Look for our txnId in whatever is there now.
			got, gerr := t.store.Get(ctx, t.CommitKey(version))
			switch {
			case gerr == nil && commitHasTxnID(got, txnID):
				err = nil // our write landed
			case gerr == nil:
				err = fmt.Errorf("put-if-absent: %w", blob.ErrExists) // someone else's commit
			case errors.Is(gerr, blob.ErrNotExist):
				// Did not land; retry the same version (PutIfAbsent is
				// atomic, so a late landing is impossible on a correct store).
				continue
			default:
				return -1, fmt.Errorf("delta: commit %d: %w: %v (re-read: %v)", version, ErrCommitUnknown, err, gerr)
			}
		}
		if err == nil {
			tx.committed = true
			tx.postCommit(ctx, version)
			return version, nil
		}
		// Lost the race: check the winners, then rebase after the newest.
		if tx.snap == nil {
			return -1, &ConflictError{Kind: ConflictTableCreated, Version: 0}
		}
		latest, err := t.latestFrom(ctx, base+1) // base+1 exists: list only from it
		if err != nil {
			return -1, err
		}
		for v := base + 1; v <= latest; v++ {
			acts, err := t.ReadCommit(ctx, v)
			if err != nil {
				return -1, err
			}
			if ours(acts, txnID) {
				// An earlier ambiguous attempt did land at v.
				tx.committed = true
				tx.postCommit(ctx, v)
				return v, nil
			}
			if err := tx.checkConflict(v, acts); err != nil {
				return -1, err
			}
		}
		base = latest
	}
	return -1, &ConflictError{Kind: ConflictTooManyRetries, Version: base}
}

func commitHasTxnID(data []byte, txnID string) bool {
	acts, err := ParseActions(data)
	return err == nil && ours(acts, txnID)
}

func ours(acts []Action, txnID string) bool {
	for _, a := range acts {
		if a.CommitInfo != nil {
			id, _ := a.CommitInfo["txnId"].(string)
			return id == txnID
		}
	}
	return false
}

// checkConflict applies the ConflictChecker rules to one winning commit.
func (tx *Txn) checkConflict(v int64, winner []Action) error {
	blind := false
	for _, a := range winner {
		if a.CommitInfo != nil {
			blind, _ = a.CommitInfo["isBlindAppend"].(bool)
		}
	}
	ourRemoves := map[string]bool{}
	for _, r := range tx.removes {
		ourRemoves[keyOf(r.Path, nil).path] = true
	}
	ourDomains := map[string]bool{}
	for _, d := range tx.domains {
		ourDomains[d.Domain] = true
	}
	for _, a := range winner {
		switch {
		case a.Protocol != nil:
			return &ConflictError{Kind: ConflictProtocolChanged, Version: v}
		case a.MetaData != nil:
			return &ConflictError{Kind: ConflictMetadataChanged, Version: v}
		case a.Txn != nil:
			if _, ok := tx.appTxns[a.Txn.AppID]; ok {
				return &ConflictError{Kind: ConflictConcurrentTransaction, Version: v, Detail: a.Txn.AppID}
			}
		case a.DomainMetadata != nil:
			if ourDomains[a.DomainMetadata.Domain] {
				return &ConflictError{Kind: ConflictDomainMetadata, Version: v, Detail: a.DomainMetadata.Domain}
			}
		case a.Remove != nil:
			p := keyOf(a.Remove.Path, nil).path
			if ourRemoves[p] {
				return &ConflictError{Kind: ConflictConcurrentDeleteDelete, Version: v, Detail: a.Remove.Path}
			}
			if tx.readPaths[p] || (tx.readAll && a.Remove.DataChange) {
				return &ConflictError{Kind: ConflictConcurrentDeleteRead, Version: v, Detail: a.Remove.Path}
			}
		case a.Add != nil:
			// New data in what we read. Under WriteSerializable a winner's
			// blind append is ordered after us and does not conflict.
			if tx.readAll && a.Add.DataChange && (!blind || tx.isolation == Serializable) {
				return &ConflictError{Kind: ConflictConcurrentAppend, Version: v, Detail: a.Add.Path}
			}
		}
	}
	return nil
}

// validate applies the per-commit validity rules before anything is
// written.
func (tx *Txn) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("delta: invalid commit: "+format, args...)
	}
	proto, meta := tx.protocol, tx.metadata
	if tx.snap == nil {
		if proto == nil || meta == nil {
			return bad("creating a table requires protocol and metaData")
		}
	} else {
		if proto == nil {
			proto = tx.snap.Protocol
		} else if protocolDowngrades(tx.snap.Protocol, proto) {
			return bad("protocol cannot drop versions or features")
		}
		if meta == nil {
			meta = tx.snap.Metadata
		}
		if err := tx.snap.CanWrite(); err != nil {
			return err
		}
	}
	if err := validProtocol(proto); err != nil {
		return bad("%v", err)
	}
	schema, err := ParseSchema(meta.SchemaString)
	if err != nil {
		return bad("%v", err)
	}
	if tx.metadata != nil {
		if meta.ID == "" {
			return bad("metaData.id is empty")
		}
		if meta.Format.Provider != "parquet" {
			return bad("format.provider must be parquet, got %q", meta.Format.Provider)
		}
		seen := map[string]bool{}
		for _, c := range meta.PartitionColumns {
			f := schema.Field(c)
			if f == nil {
				return bad("partition column %q not in schema", c)
			}
			if seen[strings.ToLower(c)] {
				return bad("duplicate partition column %q", c)
			}
			seen[strings.ToLower(c)] = true
			switch f.Type.(type) {
			case *StructType, *ArrayType, *MapType:
				return bad("partition column %q has a nested type", c)
			}
		}
		if tx.snap != nil && tx.snap.Metadata.ID != meta.ID {
			return bad("metaData.id cannot change")
		}
	}
	// The new state must be writable by us, too.
	if err := checkReader(proto); err != nil {
		return err
	}
	if err := checkWriter(proto, meta, schema); err != nil {
		return err
	}
	// Required maps and lists are written as {} / [], never null.
	if tx.metadata != nil {
		if tx.metadata.Format.Options == nil {
			tx.metadata.Format.Options = map[string]string{}
		}
		if tx.metadata.Configuration == nil {
			tx.metadata.Configuration = map[string]string{}
		}
		if tx.metadata.PartitionColumns == nil {
			tx.metadata.PartitionColumns = []string{}
		}
	}
	for _, a := range tx.adds {
		if a.PartitionValues == nil {
			a.PartitionValues = map[string]*string{}
		}
	}
	appendOnly := strings.EqualFold(meta.Configuration["delta.appendOnly"], "true")
	addKeys := map[fileKey]bool{}
	for _, a := range tx.adds {
		if a.Path == "" {
			return bad("add without path")
		}
		if a.DeletionVector != nil {
			return bad("silt does not write deletion vectors (%s)", a.Path)
		}
		k := keyOf(a.Path, a.DeletionVector)
		if addKeys[k] {
			return bad("file %q added twice", a.Path)
		}
		addKeys[k] = true
		for _, c := range meta.PartitionColumns {
			if _, ok := a.PartitionValues[c]; !ok {
				return bad("add %q lacks partition value for %q", a.Path, c)
			}
		}
		if len(a.PartitionValues) != len(meta.PartitionColumns) {
			return bad("add %q has partition values for non-partition columns", a.Path)
		}
	}
	rmKeys := map[fileKey]bool{}
	for _, r := range tx.removes {
		if r.Path == "" {
			return bad("remove without path")
		}
		k := keyOf(r.Path, r.DeletionVector)
		if rmKeys[k] {
			return bad("file %q removed twice", r.Path)
		}
		if addKeys[k] {
			return bad("file %q added and removed in one commit", r.Path)
		}
		rmKeys[k] = true
		if appendOnly && r.DataChange {
			return bad("table is append-only (delta.appendOnly=true): cannot remove %q", r.Path)
		}
	}
	if len(tx.domains) > 0 && !slices.Contains(proto.WriterFeatures, "domainMetadata") {
		return unsupported("writer feature", "domainMetadata")
	}
	for id, v := range tx.appTxns {
		if id == "" {
			return bad("txn appId is empty")
		}
		if v < 0 {
			return bad("txn %q version %d is negative", id, v)
		}
	}
	return nil
}

// encode builds the commit file: commitInfo first, then protocol, metaData,
// txns, domain metadata, removes, adds.
func (tx *Txn) encode(operation string, params map[string]any, readVersion int64, txnID string, now time.Time) ([]byte, error) {
	if params == nil {
		params = map[string]any{}
	}
	ci := map[string]any{
		"timestamp":           now.UnixMilli(),
		"operation":           operation,
		"operationParameters": params,
		"isolationLevel":      tx.isolation,
		"isBlindAppend":       tx.isBlindAppend(),
		"engineInfo":          EngineInfo,
		"txnId":               txnID,
	}
	if readVersion >= 0 {
		ci["readVersion"] = readVersion
	}
	acts := []Action{{CommitInfo: ci}}
	if tx.protocol != nil {
		acts = append(acts, Action{Protocol: tx.protocol})
	}
	if tx.metadata != nil {
		acts = append(acts, Action{MetaData: tx.metadata})
	}
	lastUpdated := now.UnixMilli()
	for _, id := range slices.Sorted(maps.Keys(tx.appTxns)) {
		acts = append(acts, Action{Txn: &SetTransaction{AppID: id, Version: tx.appTxns[id], LastUpdated: &lastUpdated}})
	}
	for _, d := range tx.domains {
		acts = append(acts, Action{DomainMetadata: d})
	}
	for _, r := range tx.removes {
		acts = append(acts, Action{Remove: r})
	}
	for _, a := range tx.adds {
		acts = append(acts, Action{Add: a})
	}
	return MarshalActions(acts)
}

// postCommit writes a checkpoint at multiples of delta.checkpointInterval
// and then cleans up expired log files.
func (tx *Txn) postCommit(ctx context.Context, version int64) {
	interval := int64(10)
	if tx.metadata != nil {
		tmp := &Snapshot{Metadata: tx.metadata}
		interval = tmp.configInt("delta.checkpointInterval", 10)
	} else if tx.snap != nil {
		interval = tx.snap.configInt("delta.checkpointInterval", 10)
	}
	if interval <= 0 || version == 0 || version%interval != 0 {
		return
	}
	t := tx.table
	snap, err := t.SnapshotAt(ctx, version)
	if err != nil {
		tx.postCommitErr = fmt.Errorf("delta: checkpoint %d: %w", version, err)
		return
	}
	if err := t.WriteCheckpoint(ctx, snap); err != nil {
		tx.postCommitErr = err
		return
	}
	if snap.configBool("delta.enableExpiredLogCleanup", true) {
		if err := t.CleanupExpiredLogs(ctx, snap); err != nil {
			tx.postCommitErr = err
		}
	}
}

// CreateTable commits version 0: protocol 1/2 (3/7 with timestampNtz when
// the schema has timestamp_ntz) and a metaData with a fresh id.
func CreateTable(ctx context.Context, t *Table, schema *StructType, partitionCols []string, config map[string]string, name string) (*Snapshot, error) {
	proto := &Protocol{MinReaderVersion: 1, MinWriterVersion: 2}
	if hasType(schema, "timestamp_ntz") {
		proto = &Protocol{MinReaderVersion: 3, MinWriterVersion: 7,
			ReaderFeatures: []string{"timestampNtz"},
			WriterFeatures: []string{"appendOnly", "invariants", "timestampNtz"}}
	}
	if config == nil {
		config = map[string]string{}
	}
	if partitionCols == nil {
		partitionCols = []string{}
	}
	created := t.now().UnixMilli()
	m := &Metadata{
		ID:               t.newID(),
		Format:           Format{Provider: "parquet", Options: map[string]string{}},
		SchemaString:     schema.SchemaString(),
		PartitionColumns: partitionCols,
		CreatedTime:      &created,
		Configuration:    config,
	}
	if name != "" {
		m.Name = &name
	}
	tx := t.Begin(nil)
	tx.SetProtocol(proto)
	tx.SetMetadata(m)
	params := map[string]any{
		"isManaged":   "false",
		"partitionBy": jsonString(partitionCols),
		"properties":  jsonString(config),
		"description": nil,
	}
	if _, err := tx.Commit(ctx, "CREATE TABLE", params); err != nil {
		return nil, fmt.Errorf("delta: create table: %w", err)
	}
	return t.SnapshotAt(ctx, 0)
}

func jsonString(v any) string {
	var buf bytes.Buffer
	b, _ := json.Marshal(v)
	buf.Write(b)
	return buf.String()
}
