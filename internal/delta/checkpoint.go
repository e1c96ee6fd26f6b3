package delta

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sort"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/silt-dev/silt/internal/blob"
)

// Checkpoints are read generically: every Parquet row is converted to a
// JSON-shaped value (structs and maps to objects, lists to arrays) and
// decoded into an Action, so unknown columns and fields are ignored exactly
// as in JSON commits. add.stats_parsed becomes add.stats when the string is
// absent, and partitionValues_parsed fills partitionValues when that is
// absent.

// actionColumns are the top-level checkpoint columns that carry state.
var actionColumns = map[string]bool{
	"txn": true, "add": true, "remove": true, "metaData": true, "protocol": true, "domainMetadata": true,
}

func (t *Table) readCheckpoint(ctx context.Context, cp checkpointSet) ([]Action, error) {
	var out []Action
	for _, f := range cp.files {
		acts, err := t.readCheckpointFile(ctx, f.key)
		if err != nil {
			return nil, err
		}
		out = append(out, acts...)
	}
	return out, nil
}

func (t *Table) readCheckpointFile(ctx context.Context, key string) (acts []Action, err error) {
	r, err := t.store.Open(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("delta: read checkpoint %s: %w", key, err)
	}
	defer r.Close()
	acts, err = ParseCheckpoint(ctx, io.NewSectionReader(r, 0, r.Size()))
	if err != nil {
		return nil, fmt.Errorf("delta: read checkpoint %s: %w", key, err)
	}
	return acts, nil
}

// ParseCheckpoint decodes a classic checkpoint Parquet file into actions.
// Errors wrap ErrCorrupt.
func ParseCheckpoint(ctx context.Context, r parquet.ReaderAtSeeker) (acts []Action, err error) {
	defer func() {
		// arrow-go can panic on malformed files; a corrupt checkpoint must be
		// an error (the caller then falls back to an older one).
		if p := recover(); p != nil {
			acts, err = nil, fmt.Errorf("%w: checkpoint: %v", ErrCorrupt, p)
		}
	}()
	pf, err := file.NewParquetReader(r)
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint: %v", ErrCorrupt, err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 4096}, memory.DefaultAllocator)
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint: %v", ErrCorrupt, err)
	}
	sc, err := fr.Schema()
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint schema: %v", ErrCorrupt, err)
	}
	// Read only the action columns (GetRecordReader takes leaf indices).
	var cols []int
	for i, f := range sc.Fields() {
		if actionColumns[f.Name] {
			cols = appendLeaves(cols, &fr.Manifest.Fields[i])
		}
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("%w: checkpoint has no action columns", ErrCorrupt)
	}
	rr, err := fr.GetRecordReader(ctx, cols, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint: %v", ErrCorrupt, err)
	}
	defer rr.Release()
	for rr.Next() {
		rec := rr.RecordBatch()
		for row := 0; row < int(rec.NumRows()); row++ {
			for c := 0; c < int(rec.NumCols()); c++ {
				col := rec.Column(c)
				if col.IsNull(row) {
					continue
				}
				name := rec.Schema().Field(c).Name
				v := arrowValue(col, row)
				a, err := checkpointAction(name, v)
				if err != nil {
					return nil, err
				}
				if a != nil {
					acts = append(acts, *a)
				}
			}
		}
	}
	if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: checkpoint: %v", ErrCorrupt, err)
	}
	return acts, nil
}

func appendLeaves(dst []int, f *pqarrow.SchemaField) []int {
	if len(f.Children) == 0 {
		if f.ColIndex >= 0 {
			dst = append(dst, f.ColIndex)
		}
		return dst
	}
	for i := range f.Children {
		dst = appendLeaves(dst, &f.Children[i])
	}
	return dst
}

// checkpointAction converts one non-null column value to an Action (nil when
// the struct is present but empty of a key field, as some writers emit).
func checkpointAction(col string, v any) (*Action, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, nil
	}
	switch col {
	case "add":
		if p, _ := m["path"].(string); p == "" {
			return nil, nil
		}
		if s, _ := m["stats"].(string); s == "" {
			if sp, ok := m["stats_parsed"].(map[string]any); ok {
				b, err := json.Marshal(sp)
				if err == nil {
					m["stats"] = string(b)
				}
			}
		}
		if _, ok := m["partitionValues"].(map[string]any); !ok {
			pv := map[string]any{}
			if pp, ok := m["partitionValues_parsed"].(map[string]any); ok {
				for k, x := range pp {
					pv[k] = partitionString(x)
				}
			}
			m["partitionValues"] = pv
		}
		delete(m, "stats_parsed")
		delete(m, "partitionValues_parsed")
	case "remove":
		if p, _ := m["path"].(string); p == "" {
			return nil, nil
		}
	case "txn":
		if id, _ := m["appId"].(string); id == "" {
			return nil, nil
		}
	case "protocol":
		if m["minReaderVersion"] == nil {
			return nil, nil
		}
	case "metaData":
		if m["id"] == nil && m["schemaString"] == nil {
			return nil, nil
		}
	case "domainMetadata":
		if d, _ := m["domain"].(string); d == "" {
			return nil, nil
		}
	}
	b, err := json.Marshal(map[string]any{col: m})
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint %s: %v", ErrCorrupt, col, err)
	}
	var a Action
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("%w: checkpoint %s: %v", ErrCorrupt, col, err)
	}
	if err := a.check(); err != nil {
		return nil, fmt.Errorf("%w: checkpoint %s: %v", ErrCorrupt, col, err)
	}
	return &a, nil
}

// partitionString renders a typed partition value in the log's string form.
func partitionString(x any) any {
	switch v := x.(type) {
	case nil:
		return nil
	case string:
		return v
	case bool:
		if v {
			return "true"
		}
		return "false"
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// arrowValue converts element i of arr to a JSON-shaped Go value.
func arrowValue(arr arrow.Array, i int) any {
	if arr.IsNull(i) {
		return nil
	}
	switch a := arr.(type) {
	case *array.Struct:
		st := a.DataType().(*arrow.StructType)
		m := make(map[string]any, a.NumField())
		for f := 0; f < a.NumField(); f++ {
			m[st.Field(f).Name] = arrowValue(a.Field(f), i)
		}
		return m
	case *array.Map:
		start, end := a.ValueOffsets(i)
		keys, items := a.Keys(), a.Items()
		m := make(map[string]any, end-start)
		for j := start; j < end; j++ {
			k, ok := arrowValue(keys, int(j)).(string)
			if !ok {
				continue
			}
			m[k] = arrowValue(items, int(j))
		}
		return m
	case array.ListLike:
		start, end := a.ValueOffsets(i)
		vals := a.ListValues()
		out := make([]any, 0, end-start)
		for j := start; j < end; j++ {
			out = append(out, arrowValue(vals, int(j)))
		}
		return out
	case *array.String:
		return a.Value(i)
	case *array.LargeString:
		return a.Value(i)
	case *array.Binary:
		return base64.StdEncoding.EncodeToString(a.Value(i))
	case *array.Boolean:
		return a.Value(i)
	case *array.Int8:
		return int64(a.Value(i))
	case *array.Int16:
		return int64(a.Value(i))
	case *array.Int32:
		return int64(a.Value(i))
	case *array.Int64:
		return a.Value(i)
	case *array.Uint8:
		return int64(a.Value(i))
	case *array.Uint16:
		return int64(a.Value(i))
	case *array.Uint32:
		return int64(a.Value(i))
	case *array.Uint64:
		return a.Value(i)
	case *array.Float32:
		return float64(a.Value(i))
	case *array.Float64:
		return a.Value(i)
	case *array.Date32:
		return a.Value(i).ToTime().Format("2006-01-02")
	case *array.Timestamp:
		unit := a.DataType().(*arrow.TimestampType).Unit
		return a.Value(i).ToTime(unit).UTC().Format("2006-01-02T15:04:05.000Z07:00")
	case *array.Decimal128:
		dt := a.DataType().(*arrow.Decimal128Type)
		return json.Number(decimalString(a.Value(i), dt.Scale))
	}
	return nil // other types (e.g. in stats_parsed): treated as unknown
}

func decimalString(n decimal128.Num, scale int32) string {
	r := new(big.Rat).SetFrac(n.BigInt(), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil))
	if scale <= 0 {
		return r.FloatString(0)
	}
	return r.FloatString(int(scale))
}

// ---- writing ----

var (
	strMap = arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String)
	strArr = arrow.ListOf(arrow.BinaryTypes.String)
	dvType = arrow.StructOf(
		arrow.Field{Name: "storageType", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "pathOrInlineDv", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "offset", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		arrow.Field{Name: "sizeInBytes", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		arrow.Field{Name: "cardinality", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	)
)

func nf(name string, t arrow.DataType) arrow.Field {
	return arrow.Field{Name: name, Type: t, Nullable: true}
}

// checkpointSchema is the classic V1 checkpoint schema (the columns Spark
// and delta-rs write), with stats as a JSON string.
var checkpointSchema = arrow.NewSchema([]arrow.Field{
	nf("txn", arrow.StructOf(
		nf("appId", arrow.BinaryTypes.String),
		nf("version", arrow.PrimitiveTypes.Int64),
		nf("lastUpdated", arrow.PrimitiveTypes.Int64),
	)),
	nf("add", arrow.StructOf(
		nf("path", arrow.BinaryTypes.String),
		nf("partitionValues", strMap),
		nf("size", arrow.PrimitiveTypes.Int64),
		nf("modificationTime", arrow.PrimitiveTypes.Int64),
		nf("dataChange", arrow.FixedWidthTypes.Boolean),
		nf("stats", arrow.BinaryTypes.String),
		nf("tags", strMap),
		nf("deletionVector", dvType),
		nf("baseRowId", arrow.PrimitiveTypes.Int64),
		nf("defaultRowCommitVersion", arrow.PrimitiveTypes.Int64),
		nf("clusteringProvider", arrow.BinaryTypes.String),
	)),
	nf("remove", arrow.StructOf(
		nf("path", arrow.BinaryTypes.String),
		nf("deletionTimestamp", arrow.PrimitiveTypes.Int64),
		nf("dataChange", arrow.FixedWidthTypes.Boolean),
		nf("extendedFileMetadata", arrow.FixedWidthTypes.Boolean),
		nf("partitionValues", strMap),
		nf("size", arrow.PrimitiveTypes.Int64),
		nf("deletionVector", dvType),
		nf("baseRowId", arrow.PrimitiveTypes.Int64),
		nf("defaultRowCommitVersion", arrow.PrimitiveTypes.Int64),
	)),
	nf("metaData", arrow.StructOf(
		nf("id", arrow.BinaryTypes.String),
		nf("name", arrow.BinaryTypes.String),
		nf("description", arrow.BinaryTypes.String),
		nf("format", arrow.StructOf(
			nf("provider", arrow.BinaryTypes.String),
			nf("options", strMap),
		)),
		nf("schemaString", arrow.BinaryTypes.String),
		nf("partitionColumns", strArr),
		nf("configuration", strMap),
		nf("createdTime", arrow.PrimitiveTypes.Int64),
	)),
	nf("protocol", arrow.StructOf(
		nf("minReaderVersion", arrow.PrimitiveTypes.Int32),
		nf("minWriterVersion", arrow.PrimitiveTypes.Int32),
		nf("readerFeatures", strArr),
		nf("writerFeatures", strArr),
	)),
	nf("domainMetadata", arrow.StructOf(
		nf("domain", arrow.BinaryTypes.String),
		nf("configuration", arrow.BinaryTypes.String),
		nf("removed", arrow.FixedWidthTypes.Boolean),
	)),
}, nil)

// CheckpointActions returns the actions a checkpoint of s holds: protocol,
// metaData, txns, live domain metadata, live adds and the tombstones not
// yet expired at now (remove rows drop stats and tags).
func (s *Snapshot) CheckpointActions(now time.Time) ([]Action, error) {
	retention, err := s.configDuration("delta.deletedFileRetentionDuration", 7*24*time.Hour)
	if err != nil {
		return nil, err
	}
	cutoff := now.Add(-retention).UnixMilli()
	acts := []Action{{Protocol: s.Protocol}, {MetaData: s.Metadata}}
	appIDs := make([]string, 0, len(s.txns))
	for id := range s.txns {
		appIDs = append(appIDs, id)
	}
	sort.Strings(appIDs)
	for _, id := range appIDs {
		acts = append(acts, Action{Txn: s.txns[id]})
	}
	domains := make([]string, 0, len(s.domains))
	for d := range s.domains {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	for _, d := range domains {
		acts = append(acts, Action{DomainMetadata: s.domains[d]})
	}
	for _, a := range s.files {
		acts = append(acts, Action{Add: a})
	}
	for _, r := range s.tombstones {
		if r.DeletionTimestamp == nil || *r.DeletionTimestamp <= cutoff {
			continue // expired
		}
		rc := *r
		rc.Stats, rc.Tags = "", nil
		acts = append(acts, Action{Remove: &rc})
	}
	return acts, nil
}

// EncodeCheckpoint writes actions as a classic checkpoint Parquet file.
func EncodeCheckpoint(acts []Action) ([]byte, error) {
	mem := memory.DefaultAllocator
	rb := array.NewRecordBuilder(mem, checkpointSchema)
	defer rb.Release()
	colIdx := map[string]int{}
	for i, f := range checkpointSchema.Fields() {
		colIdx[f.Name] = i
	}
	for i := range acts {
		name, v, err := actionAsValue(&acts[i])
		if err != nil {
			return nil, err
		}
		ci, ok := colIdx[name]
		if !ok {
			return nil, fmt.Errorf("delta: action %q cannot go in a checkpoint", name)
		}
		for j := range checkpointSchema.Fields() {
			if j == ci {
				if err := appendValue(rb.Field(j), v); err != nil {
					return nil, fmt.Errorf("delta: checkpoint %s: %w", name, err)
				}
			} else {
				rb.Field(j).AppendNull()
			}
		}
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy), parquet.WithAllocator(mem))
	w, err := pqarrow.NewFileWriter(checkpointSchema, &buf, props, pqarrow.DefaultWriterProps())
	if err != nil {
		return nil, fmt.Errorf("delta: checkpoint writer: %w", err)
	}
	if err := w.Write(rec); err != nil {
		w.Close()
		return nil, fmt.Errorf("delta: write checkpoint: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("delta: close checkpoint: %w", err)
	}
	return buf.Bytes(), nil
}

// actionAsValue returns the action's column name and its JSON-shaped value.
func actionAsValue(a *Action) (string, any, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return "", nil, fmt.Errorf("delta: encode action: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return "", nil, err
	}
	if len(m) != 1 {
		return "", nil, fmt.Errorf("delta: action has %d kinds", len(m))
	}
	for k, v := range m {
		return k, v, nil
	}
	return "", nil, nil
}

// appendValue appends a JSON-shaped value to a builder of the matching type.
// Fields missing from v become nulls.
func appendValue(b array.Builder, v any) error {
	if v == nil {
		b.AppendNull()
		return nil
	}
	switch bb := b.(type) {
	case *array.StructBuilder:
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("want object, got %T", v)
		}
		bb.Append(true)
		st := bb.Type().(*arrow.StructType)
		for i := 0; i < bb.NumField(); i++ {
			if err := appendValue(bb.FieldBuilder(i), m[st.Field(i).Name]); err != nil {
				return fmt.Errorf("%s: %w", st.Field(i).Name, err)
			}
		}
	case *array.MapBuilder:
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("want object, got %T", v)
		}
		bb.Append(true)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			bb.KeyBuilder().(*array.StringBuilder).Append(k)
			if err := appendValue(bb.ItemBuilder(), m[k]); err != nil {
				return err
			}
		}
	case *array.ListBuilder:
		l, ok := v.([]any)
		if !ok {
			return fmt.Errorf("want array, got %T", v)
		}
		bb.Append(true)
		for _, x := range l {
			if err := appendValue(bb.ValueBuilder(), x); err != nil {
				return err
			}
		}
	case *array.StringBuilder:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("want string, got %T", v)
		}
		bb.Append(s)
	case *array.BooleanBuilder:
		x, ok := v.(bool)
		if !ok {
			return fmt.Errorf("want bool, got %T", v)
		}
		bb.Append(x)
	case *array.Int64Builder:
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("want number, got %T", v)
		}
		x, err := n.Int64()
		if err != nil {
			return err
		}
		bb.Append(x)
	case *array.Int32Builder:
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("want number, got %T", v)
		}
		x, err := n.Int64()
		if err != nil {
			return err
		}
		bb.Append(int32(x))
	default:
		return fmt.Errorf("unsupported builder %T", b)
	}
	return nil
}

// WriteCheckpoint writes a classic checkpoint for snapshot s (which must
// come from t) and updates _last_checkpoint. Writing a checkpoint that
// already exists is not an error: both copies hold the same state.
func (t *Table) WriteCheckpoint(ctx context.Context, s *Snapshot) error {
	acts, err := s.CheckpointActions(t.now())
	if err != nil {
		return err
	}
	data, err := EncodeCheckpoint(acts)
	if err != nil {
		return err
	}
	key := t.checkpointKey(s.Version)
	if err := t.store.PutIfAbsent(ctx, key, data); err != nil && !errors.Is(err, blob.ErrExists) {
		return fmt.Errorf("delta: write checkpoint %d: %w", s.Version, err)
	}
	if lc := t.readLastCheckpoint(ctx); lc != nil && lc.Version > s.Version {
		return nil // a newer checkpoint is already advertised
	}
	nadd := int64(0)
	for _, a := range acts {
		if a.Add != nil {
			nadd++
		}
	}
	lc, err := encodeLastCheckpoint(lastCheckpoint{Version: s.Version, Size: int64(len(acts)), SizeInBytes: int64(len(data)), NumOfAddFiles: nadd})
	if err != nil {
		return err
	}
	if err := t.store.Put(ctx, t.lastCheckpointKey(), lc); err != nil {
		return fmt.Errorf("delta: write _last_checkpoint: %w", err)
	}
	return nil
}

// encodeLastCheckpoint renders _last_checkpoint with its checksum.
func encodeLastCheckpoint(lc lastCheckpoint) ([]byte, error) {
	b, err := json.Marshal(lc)
	if err != nil {
		return nil, err
	}
	sum, err := lastCheckpointChecksum(b)
	if err != nil {
		return nil, err
	}
	lc.Checksum = sum
	return json.Marshal(lc)
}
