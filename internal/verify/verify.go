// Package verify compares a Silver table with its source table, row for
// row: every source row must be in Silver exactly once with equal values in
// every source column, and Silver must hold nothing else.
// An append-only Silver table (source.keyless: append) is compared by
// replaying its change log (appendlog.go).
//
// Both sides are brought to the same typed form: source rows are fetched in
// PostgreSQL's text format (UTC, ISO) and parsed by the same rule Bronze uses
// (bronze.AppendText); Silver rows are read from Delta. Each row is rendered
// as one canonical string; the two multisets must be equal.
package verify

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/bronze"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/silver"
)

// Result of comparing one table.
type Result struct {
	Table          change.TableID
	SourceRows     int
	SilverRows     int
	SourceChecksum string // SHA-256 over the sorted canonical rows
	SilverChecksum string
	Missing        []string // rows in the source but not in Silver (first few)
	Extra          []string // rows in Silver but not in the source (first few)
}

// Equal reports whether Silver equals the source.
func (r Result) Equal() bool {
	return r.SourceRows == r.SilverRows && r.SourceChecksum == r.SilverChecksum
}

func (r Result) String() string {
	if r.Equal() {
		return fmt.Sprintf("%s: %d rows, equal (checksum %s)", r.Table, r.SourceRows, r.SourceChecksum[:16])
	}
	s := fmt.Sprintf("%s: MISMATCH source %d rows, silver %d rows", r.Table, r.SourceRows, r.SilverRows)
	for _, m := range r.Missing {
		s += "\n    missing in silver: " + m
	}
	for _, e := range r.Extra {
		s += "\n    extra in silver:   " + e
	}
	return s
}

// Table compares one table. conn must use the session settings of
// pipeline.SessionDSN (TimeZone=UTC, DateStyle=ISO, bytea_output=hex).
func Table(ctx context.Context, conn *pgx.Conn, store blob.Store, id change.TableID) (Result, error) {
	res := Result{Table: id}
	src, cols, err := sourceRows(ctx, conn, id)
	if err != nil {
		return res, err
	}
	sil, err := silverRows(ctx, store, id, cols)
	if err != nil {
		return res, err
	}
	res.SourceRows, res.SilverRows = len(src), len(sil)
	res.SourceChecksum, res.SilverChecksum = checksum(src), checksum(sil)
	if !res.Equal() {
		res.Missing, res.Extra = diff(src, sil, 5)
	}
	return res, nil
}

func sourceRows(ctx context.Context, conn *pgx.Conn, id change.TableID) ([]string, []string, error) {
	rec, cols, err := SourceRecord(ctx, conn, id)
	if err != nil {
		return nil, nil, err
	}
	defer rec.Release()
	return render([]arrow.RecordBatch{rec}, cols), cols, nil
}

// SourceRecord reads a source table into one Arrow record whose columns
// are Bronze's: PostgreSQL text parsed by Bronze's type rule, names
// normalised (bronze.FieldName, returned as cols). The caller releases it.
func SourceRecord(ctx context.Context, conn *pgx.Conn, id change.TableID) (rec arrow.RecordBatch, cols []string, err error) {
	q := "SELECT * FROM " + pgx.Identifier{id.Schema, id.Name}.Sanitize()
	rows, err := conn.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, nil, fmt.Errorf("verify: query %s: %w", id, err)
	}
	defer rows.Close()
	fds := rows.FieldDescriptions()
	cols = make([]string, len(fds))
	types := make([]delta.DataType, len(fds))
	st := &delta.StructType{}
	for i, fd := range fds {
		cols[i] = bronze.FieldName(fd.Name)
		types[i] = bronze.DeltaType(change.Column{Name: fd.Name, TypeOID: fd.DataTypeOID, TypeMod: fd.TypeModifier})
		st.Fields = append(st.Fields, &delta.StructField{Name: cols[i], Type: types[i], Nullable: true})
	}
	as, err := datafile.ArrowSchema(st)
	if err != nil {
		return nil, nil, err
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, as)
	defer b.Release()
	for rows.Next() {
		for i, raw := range rows.RawValues() {
			if raw == nil {
				b.Field(i).AppendNull()
				continue
			}
			if err := bronze.AppendText(b.Field(i), types[i], raw); err != nil {
				return nil, nil, fmt.Errorf("verify: %s column %s: %w", id, cols[i], err)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("verify: query %s: %w", id, err)
	}
	return b.NewRecordBatch(), cols, nil
}

func silverRows(ctx context.Context, store blob.Store, id change.TableID, cols []string) ([]string, error) {
	t := delta.NewTable(store, silver.TablePath(id))
	snap, err := t.Snapshot(ctx)
	if errors.Is(err, delta.ErrNotATable) {
		return nil, nil // no Silver table yet: zero rows
	}
	if err != nil {
		return nil, fmt.Errorf("verify: silver %s: %w", id, err)
	}
	ti := datafile.Info(t, snap)
	var recs []arrow.RecordBatch
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	err = datafile.Scan(ctx, store, ti, snap.Files(), func(r arrow.RecordBatch) error {
		r.Retain()
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify: silver %s: %w", id, err)
	}
	if silver.IsAppendOnly(snap) { // a change log (source.keyless: append)
		return replayLog(recs, cols), nil
	}
	return render(recs, cols), nil
}

// render returns one canonical string per row over cols (by name; a column
// missing from a record renders as NULL).
func render(recs []arrow.RecordBatch, cols []string) []string {
	var out []string
	var sb strings.Builder
	for _, r := range recs {
		ix := map[string]int{}
		for i, f := range r.Schema().Fields() {
			ix[strings.ToLower(f.Name)] = i
		}
		for row := 0; row < int(r.NumRows()); row++ {
			sb.Reset()
			for ci, c := range cols {
				if ci > 0 {
					sb.WriteByte('|')
				}
				j, ok := ix[strings.ToLower(c)]
				if !ok || r.Column(j).IsNull(row) {
					sb.WriteString("NULL")
					continue
				}
				fmt.Fprintf(&sb, "%q", r.Column(j).ValueStr(row))
			}
			out = append(out, sb.String())
		}
	}
	sort.Strings(out)
	return out
}

func checksum(rows []string) string {
	h := sha256.New()
	for _, r := range rows {
		h.Write([]byte(r))
		h.Write([]byte{'\n'})
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// diff returns up to n rows only in a and only in b (both sorted).
func diff(a, b []string, n int) (onlyA, onlyB []string) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j >= len(b) || (i < len(a) && a[i] < b[j]):
			if len(onlyA) < n {
				onlyA = append(onlyA, a[i])
			}
			i++
		case i >= len(a) || b[j] < a[i]:
			if len(onlyB) < n {
				onlyB = append(onlyB, b[j])
			}
			j++
		default:
			i++
			j++
		}
	}
	return onlyA, onlyB
}
