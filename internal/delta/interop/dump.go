package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
)

// Manifest lists the tables of a fixture directory.
type Manifest struct {
	Engine string          `json:"engine"` // who wrote the tables: "silt", "delta-rs", "spark"
	Tables []ManifestTable `json:"tables"`
}

// ManifestTable is one table of a fixture directory.
type ManifestTable struct {
	Name   string `json:"name"`
	Engine string `json:"engine,omitempty"` // overrides Manifest.Engine
	// Versions with an expectation under expected/<name>/.
	Versions []int64 `json:"versions"`
	// Latest version and number of commits in the history.
	Latest  int64 `json:"latest"`
	History int   `json:"history"`
	// ExpectError, when set, is a feature name: silt must refuse to read
	// the table with delta.ErrUnsupportedFeature naming it.
	ExpectError string `json:"expect_error,omitempty"`
	// ExpectWriteError, when set, is a feature name: silt reads the table
	// but must refuse to write to it (Snapshot.CanWrite) naming it. Both
	// may list alternatives as "a|b".
	ExpectWriteError string `json:"expect_write_error,omitempty"`
	// Checkpoint: the writer left at least one checkpoint (and
	// _last_checkpoint).
	Checkpoint bool   `json:"checkpoint,omitempty"`
	Notes      string `json:"notes,omitempty"`
}

// Expectation is expected/<name>/v<version>.json: what the writing engine
// read at one version (the rows are in the .rows.jsonl next to it).
type Expectation struct {
	Version          int64            `json:"version"`
	Schema           json.RawMessage  `json:"schema"` // Delta schemaString, parsed
	PartitionColumns []string         `json:"partition_columns"`
	NumFiles         int              `json:"num_files"`
	NumRows          int              `json:"num_rows"`
	Txns             map[string]int64 `json:"txns,omitempty"`
}

// ExpectedPaths returns the meta and rows file of one expectation.
func ExpectedPaths(dir, table string, version int64) (meta, rows string) {
	base := filepath.Join(dir, "expected", table, fmt.Sprintf("v%d", version))
	return base + ".json", base + ".rows.jsonl"
}

// TableDir is where a fixture table lives.
func TableDir(dir, table string) string { return filepath.Join(dir, "tables", table) }

// ReadManifest reads dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return &m, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// OpenTable opens the fixture table at dir.
func OpenTable(dir string) (*delta.Table, blob.Store, error) {
	st, err := local.New(dir)
	if err != nil {
		return nil, nil, err
	}
	return delta.NewTable(st, ""), st, nil
}

// ScanRows reads every live row of s with silt and normalises it.
func ScanRows(ctx context.Context, st blob.Store, tbl *delta.Table, s *delta.Snapshot) ([]map[string]any, error) {
	var rows []map[string]any
	err := datafile.Scan(ctx, st, datafile.Info(tbl, s), s.Files(), func(r arrow.Record) error {
		rs, err := RecordRows(r)
		rows = append(rows, rs...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("scan version %d: %w", s.Version, err)
	}
	return rows, nil
}

// CanonicalRows returns the canonical text of each row.
func CanonicalRows[T any](rows []T) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = Canonical(r)
	}
	return out
}

// DumpVersion writes what silt reads at version v of the table at
// tableDir as expected/<name>/v<v>.{json,rows.jsonl} under dir.
func DumpVersion(ctx context.Context, dir, name string, v int64) error {
	tbl, st, err := OpenTable(TableDir(dir, name))
	if err != nil {
		return err
	}
	s, err := tbl.SnapshotAt(ctx, v)
	if err != nil {
		return err
	}
	rows, err := ScanRows(ctx, st, tbl, s)
	if err != nil {
		return err
	}
	lines := CanonicalRows(rows)
	sort.Strings(lines) // stable files; order carries no meaning
	var buf bytes.Buffer
	for _, l := range lines {
		buf.WriteString(l)
		buf.WriteByte('\n')
	}
	metaPath, rowsPath := ExpectedPaths(dir, name, v)
	e := Expectation{
		Version:          s.Version,
		Schema:           json.RawMessage(s.Metadata.SchemaString),
		PartitionColumns: append([]string{}, s.PartitionColumns()...),
		NumFiles:         len(s.Files()),
		NumRows:          len(rows),
	}
	if txns := s.Txns(); len(txns) > 0 {
		e.Txns = map[string]int64{}
		for id, t := range txns {
			e.Txns[id] = t.Version
		}
	}
	if err := writeJSON(metaPath, e); err != nil {
		return err
	}
	return os.WriteFile(rowsPath, buf.Bytes(), 0o644)
}
