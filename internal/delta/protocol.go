package delta

import (
	"fmt"
	"slices"
	"strings"
)

// Reader features silt can read. Column mapping and deletion vectors are
// resolved by the datafile layer (physical names / DV files); the log layer
// only needs to carry them through.
var supportedReaderFeatures = map[string]bool{
	"columnMapping":       true,
	"deletionVectors":     true,
	"timestampNtz":        true,
	"vacuumProtocolCheck": true,
}

// Writer features silt implements, or whose rules it checks before a write
// (the checks for the conditional ones are in CanWrite).
var supportedWriterFeatures = map[string]bool{
	"appendOnly":          true,
	"invariants":          true, // refused when a field carries delta.invariants
	"checkConstraints":    true, // refused when delta.constraints.* is set
	"changeDataFeed":      true, // refused when delta.enableChangeDataFeed=true
	"generatedColumns":    true, // refused when a field carries delta.generationExpression
	"identityColumns":     true, // refused when a field carries delta.identity.*
	"allowColumnDefaults": true, // refused when a field carries CURRENT_DEFAULT
	"columnMapping":       true, // refused unless delta.columnMapping.mode is none
	"timestampNtz":        true,
	"vacuumProtocolCheck": true,
}

func unsupported(kind, feature string) error {
	return fmt.Errorf("delta: table requires %s %q which silt does not support: %w", kind, feature, ErrUnsupportedFeature)
}

// CanRead checks the reader protocol: minReaderVersion 1, 2 (column
// mapping) or 3 with readerFeatures all supported.
func (s *Snapshot) CanRead() error { return checkReader(s.Protocol) }

func checkReader(p *Protocol) error {
	switch p.MinReaderVersion {
	case 1, 2:
		return nil
	case 3:
		for _, f := range p.ReaderFeatures {
			if !supportedReaderFeatures[f] {
				return unsupported("reader feature", f)
			}
		}
		return nil
	}
	if p.MinReaderVersion > 3 {
		// Name the features too: the most useful hint for the operator.
		for _, f := range p.ReaderFeatures {
			if !supportedReaderFeatures[f] {
				return fmt.Errorf("delta: table requires reader version %d (silt supports up to 3; unknown reader feature %q): %w",
					p.MinReaderVersion, f, ErrUnsupportedFeature)
			}
		}
	}
	return fmt.Errorf("delta: table requires reader version %d (silt supports up to 3): %w", p.MinReaderVersion, ErrUnsupportedFeature)
}

// CanWrite checks that silt may commit to this table: the reader checks,
// the writer version or writerFeatures, and the table properties and column
// metadata that require behaviour silt lacks (invariants, CHECK
// constraints, generated/identity/default columns, change data feed,
// column mapping, struct-only checkpoint stats).
func (s *Snapshot) CanWrite() error {
	if err := s.CanRead(); err != nil {
		return err
	}
	return checkWriter(s.Protocol, s.Metadata, s.schema)
}

func checkWriter(p *Protocol, m *Metadata, schema *StructType) error {
	if p.MinReaderVersion == 2 {
		// Reader 2 = column mapping; allowed only while its mode is none.
		if mode := m.Configuration["delta.columnMapping.mode"]; mode != "" && !strings.EqualFold(mode, "none") {
			return unsupported("writer feature", "columnMapping")
		}
	}
	if p.MinReaderVersion == 3 {
		for _, f := range p.ReaderFeatures {
			if f == "deletionVectors" {
				return unsupported("writer feature", f)
			}
		}
	}
	switch {
	case p.MinWriterVersion < 1:
		return fmt.Errorf("%w: minWriterVersion %d", ErrCorrupt, p.MinWriterVersion)
	case p.MinWriterVersion <= 6:
		// Legacy levels are cumulative; the conditional checks below
		// cover what each level enables.
	case p.MinWriterVersion == 7:
		for _, f := range p.WriterFeatures {
			if !supportedWriterFeatures[f] {
				return unsupported("writer feature", f)
			}
		}
	default:
		return fmt.Errorf("delta: table requires writer version %d (silt supports up to 7): %w", p.MinWriterVersion, ErrUnsupportedFeature)
	}
	cfg := m.Configuration
	for k := range cfg {
		if strings.HasPrefix(k, "delta.constraints.") {
			return unsupported("writer feature", "checkConstraints")
		}
	}
	if strings.EqualFold(cfg["delta.enableChangeDataFeed"], "true") {
		return unsupported("writer feature", "changeDataFeed")
	}
	if mode := cfg["delta.columnMapping.mode"]; mode != "" && !strings.EqualFold(mode, "none") {
		return unsupported("writer feature", "columnMapping")
	}
	for prop, feat := range map[string]string{
		"delta.enableInCommitTimestamps": "inCommitTimestamp",
		"delta.enableDeletionVectors":    "deletionVectors",
		"delta.enableRowTracking":        "rowTracking",
		"delta.enableTypeWidening":       "typeWidening",
	} {
		if strings.EqualFold(cfg[prop], "true") {
			return unsupported("writer feature", feat)
		}
	}
	if strings.EqualFold(cfg["delta.checkpoint.writeStatsAsStruct"], "true") {
		return fmt.Errorf("delta: table sets delta.checkpoint.writeStatsAsStruct=true which silt does not support: %w", ErrUnsupportedFeature)
	}
	if schema != nil {
		if err := checkColumnMetadata(schema); err != nil {
			return err
		}
		if hasType(schema, "timestamp_ntz") && !hasFeature(p, "timestampNtz") {
			return fmt.Errorf("%w: schema has timestamp_ntz but protocol lacks timestampNtz", ErrCorrupt)
		}
	}
	return nil
}

func hasFeature(p *Protocol, f string) bool {
	return slices.Contains(p.WriterFeatures, f) || slices.Contains(p.ReaderFeatures, f)
}

// checkColumnMetadata refuses column metadata whose semantics silt does not
// enforce.
func checkColumnMetadata(t DataType) error {
	var err error
	walkFields(t, func(f *StructField) bool {
		for k := range f.Metadata {
			var feat string
			switch {
			case k == "delta.invariants":
				feat = "invariants"
			case k == "delta.generationExpression":
				feat = "generatedColumns"
			case strings.HasPrefix(k, "delta.identity."):
				feat = "identityColumns"
			case k == "CURRENT_DEFAULT":
				feat = "allowColumnDefaults"
			}
			if feat != "" {
				err = fmt.Errorf("delta: column %q uses %s (%s) which silt does not support: %w", f.Name, feat, k, ErrUnsupportedFeature)
				return false
			}
		}
		return true
	})
	return err
}

// walkFields visits every struct field, nested ones included, until fn
// returns false.
func walkFields(t DataType, fn func(*StructField) bool) bool {
	switch v := t.(type) {
	case *StructType:
		for _, f := range v.Fields {
			if !fn(f) || !walkFields(f.Type, fn) {
				return false
			}
		}
	case *ArrayType:
		return walkFields(v.ElementType, fn)
	case *MapType:
		return walkFields(v.KeyType, fn) && walkFields(v.ValueType, fn)
	}
	return true
}

// hasType reports whether a primitive type name occurs anywhere in t.
func hasType(t DataType, name string) bool {
	found := false
	var walk func(DataType)
	walk = func(t DataType) {
		switch v := t.(type) {
		case *StructType:
			for _, f := range v.Fields {
				walk(f.Type)
			}
		case *ArrayType:
			walk(v.ElementType)
		case *MapType:
			walk(v.KeyType)
			walk(v.ValueType)
		default:
			if t != nil && t.TypeName() == name {
				found = true
			}
		}
	}
	walk(t)
	return found
}

// validProtocol checks the shape rules of a protocol action a writer emits.
func validProtocol(p *Protocol) error {
	if p.MinReaderVersion < 1 || p.MinWriterVersion < 1 {
		return fmt.Errorf("protocol versions must be >= 1, got %d/%d", p.MinReaderVersion, p.MinWriterVersion)
	}
	if p.MinReaderVersion == 3 && p.MinWriterVersion != 7 {
		return fmt.Errorf("reader version 3 requires writer version 7, got %d", p.MinWriterVersion)
	}
	if len(p.ReaderFeatures) > 0 && p.MinReaderVersion != 3 {
		return fmt.Errorf("readerFeatures require reader version 3")
	}
	if len(p.WriterFeatures) > 0 && p.MinWriterVersion != 7 {
		return fmt.Errorf("writerFeatures require writer version 7")
	}
	for _, f := range p.ReaderFeatures {
		if !slices.Contains(p.WriterFeatures, f) {
			return fmt.Errorf("reader feature %q must also be a writer feature", f)
		}
	}
	return nil
}

// protocolDowngrades reports whether next drops anything old had.
func protocolDowngrades(old, next *Protocol) bool {
	if next.MinReaderVersion < old.MinReaderVersion || next.MinWriterVersion < old.MinWriterVersion {
		return true
	}
	for _, f := range old.ReaderFeatures {
		if !slices.Contains(next.ReaderFeatures, f) {
			return true
		}
	}
	for _, f := range old.WriterFeatures {
		if !slices.Contains(next.WriterFeatures, f) {
			return true
		}
	}
	return false
}
