package datafile

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/silt-dev/silt/internal/delta"
)

// Column-mapping keys in a StructField's metadata and the table configuration.
const (
	cmModeKey     = "delta.columnMapping.mode"
	cmIDKey       = "delta.columnMapping.id"
	cmPhysNameKey = "delta.columnMapping.physicalName"
	parquetIDKey  = "PARQUET:field_id"
)

// mappingMode is the table's column mapping mode.
type mappingMode int

const (
	mapNone mappingMode = iota
	mapName
	mapID
)

func columnMapping(cfg map[string]string) (mappingMode, error) {
	switch strings.ToLower(cfg[cmModeKey]) {
	case "", "none":
		return mapNone, nil
	case "name":
		return mapName, nil
	case "id":
		return mapID, nil
	}
	return mapNone, fmt.Errorf("unsupported column mapping mode %q", cfg[cmModeKey])
}

// physicalName returns the column's physical name under mode (its logical
// name when mapping is off or the field carries no physical name).
func physicalName(f *delta.StructField, mode mappingMode) string {
	if mode == mapNone {
		return f.Name
	}
	if s, ok := f.Metadata[cmPhysNameKey].(string); ok && s != "" {
		return s
	}
	return f.Name
}

// fieldID returns the field's delta.columnMapping.id, if any.
func fieldID(f *delta.StructField) (int64, bool) {
	switch v := f.Metadata[cmIDKey].(type) {
	case float64:
		return int64(v), true
	case json.Number:
		n, err := v.Int64()
		return n, err == nil
	case int64:
		return v, true
	case int:
		return int64(v), true
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// Arrow types used for Delta primitive types.
var (
	tsUTC = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	tsNTZ = &arrow.TimestampType{Unit: arrow.Microsecond}
)

// ArrowSchema returns the Arrow schema for a Delta schema, using logical
// names: string -> utf8, long/integer/short/byte -> int64/32/16/8, float ->
// float32, double -> float64, boolean, binary, date -> date32, timestamp ->
// timestamp[us, tz=UTC], timestamp_ntz -> timestamp[us], decimal(p,s) ->
// decimal128(p,s), void -> null, array -> list<element>, map -> map<key,
// value>, struct -> struct. Nullability follows the Delta schema.
func ArrowSchema(s *delta.StructType) (*arrow.Schema, error) {
	if s == nil {
		return nil, fmt.Errorf("datafile: nil schema")
	}
	fields := make([]arrow.Field, len(s.Fields))
	for i, f := range s.Fields {
		t, err := arrowType(f.Type, mapNone)
		if err != nil {
			return nil, fmt.Errorf("datafile: column %q: %w", f.Name, err)
		}
		fields[i] = arrow.Field{Name: f.Name, Type: t, Nullable: f.Nullable}
	}
	return arrow.NewSchema(fields, nil), nil
}

// physicalSchema is the Arrow schema of a data file for the given data
// fields: physical names and Parquet field ids under column mapping.
func physicalSchema(fields []*delta.StructField, mode mappingMode) (*arrow.Schema, error) {
	out := make([]arrow.Field, len(fields))
	for i, f := range fields {
		af, err := physicalField(f, mode)
		if err != nil {
			return nil, err
		}
		out[i] = af
	}
	return arrow.NewSchema(out, nil), nil
}

func physicalField(f *delta.StructField, mode mappingMode) (arrow.Field, error) {
	t, err := arrowType(f.Type, mode)
	if err != nil {
		return arrow.Field{}, fmt.Errorf("column %q: %w", f.Name, err)
	}
	af := arrow.Field{Name: physicalName(f, mode), Type: t, Nullable: f.Nullable}
	if mode != mapNone {
		if id, ok := fieldID(f); ok {
			af.Metadata = arrow.NewMetadata([]string{parquetIDKey}, []string{strconv.FormatInt(id, 10)})
		}
	}
	return af, nil
}

// arrowType maps a Delta type; under column mapping nested struct fields take
// their physical names (and field ids).
func arrowType(t delta.DataType, mode mappingMode) (arrow.DataType, error) {
	switch v := t.(type) {
	case *delta.PrimitiveType:
		switch v.Name {
		case "string":
			return arrow.BinaryTypes.String, nil
		case "long":
			return arrow.PrimitiveTypes.Int64, nil
		case "integer":
			return arrow.PrimitiveTypes.Int32, nil
		case "short":
			return arrow.PrimitiveTypes.Int16, nil
		case "byte":
			return arrow.PrimitiveTypes.Int8, nil
		case "float":
			return arrow.PrimitiveTypes.Float32, nil
		case "double":
			return arrow.PrimitiveTypes.Float64, nil
		case "boolean":
			return arrow.FixedWidthTypes.Boolean, nil
		case "binary":
			return arrow.BinaryTypes.Binary, nil
		case "date":
			return arrow.FixedWidthTypes.Date32, nil
		case "timestamp":
			return tsUTC, nil
		case "timestamp_ntz":
			return tsNTZ, nil
		case "void":
			return arrow.Null, nil
		}
		return nil, fmt.Errorf("unsupported primitive type %q", v.Name)
	case *delta.DecimalType:
		if v.Precision < 1 || v.Precision > 38 || v.Scale < 0 || v.Scale > v.Precision {
			return nil, fmt.Errorf("invalid decimal(%d,%d)", v.Precision, v.Scale)
		}
		return &arrow.Decimal128Type{Precision: int32(v.Precision), Scale: int32(v.Scale)}, nil
	case *delta.StructType:
		fields := make([]arrow.Field, len(v.Fields))
		for i, f := range v.Fields {
			af, err := physicalField(f, mode)
			if err != nil {
				return nil, err
			}
			fields[i] = af
		}
		return arrow.StructOf(fields...), nil
	case *delta.ArrayType:
		et, err := arrowType(v.ElementType, mode)
		if err != nil {
			return nil, fmt.Errorf("array element: %w", err)
		}
		return arrow.ListOfField(arrow.Field{Name: "element", Type: et, Nullable: v.ContainsNull}), nil
	case *delta.MapType:
		kt, err := arrowType(v.KeyType, mode)
		if err != nil {
			return nil, fmt.Errorf("map key: %w", err)
		}
		vt, err := arrowType(v.ValueType, mode)
		if err != nil {
			return nil, fmt.Errorf("map value: %w", err)
		}
		return arrow.MapOfFields(
			arrow.Field{Name: "key", Type: kt},
			arrow.Field{Name: "value", Type: vt, Nullable: v.ValueContainsNull}), nil
	case nil:
		return nil, fmt.Errorf("nil data type")
	}
	return nil, fmt.Errorf("unsupported data type %T", t)
}

// DeltaSchema returns the Delta schema for an Arrow schema. Timestamps with a
// zone map to timestamp, without to timestamp_ntz (any unit); large variants
// of string, binary and list are accepted. Unsigned integers, float16,
// durations, unions and other types with no Delta equivalent are errors.
func DeltaSchema(s *arrow.Schema) (*delta.StructType, error) {
	if s == nil {
		return nil, fmt.Errorf("datafile: nil arrow schema")
	}
	st, err := deltaStruct(s.Fields())
	if err != nil {
		return nil, fmt.Errorf("datafile: %w", err)
	}
	return st, nil
}

func deltaStruct(fields []arrow.Field) (*delta.StructType, error) {
	st := &delta.StructType{}
	seen := map[string]bool{}
	for _, f := range fields {
		l := strings.ToLower(f.Name)
		if seen[l] {
			return nil, fmt.Errorf("duplicate column name %q", f.Name)
		}
		seen[l] = true
		t, err := deltaType(f.Type)
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", f.Name, err)
		}
		st.Fields = append(st.Fields, &delta.StructField{Name: f.Name, Type: t, Nullable: f.Nullable, Metadata: map[string]any{}})
	}
	return st, nil
}

func deltaType(t arrow.DataType) (delta.DataType, error) {
	switch v := t.(type) {
	case *arrow.StringType, *arrow.LargeStringType, *arrow.StringViewType:
		return delta.String, nil
	case *arrow.BinaryType, *arrow.LargeBinaryType, *arrow.BinaryViewType, *arrow.FixedSizeBinaryType:
		return delta.Binary, nil
	case *arrow.Int64Type:
		return delta.Long, nil
	case *arrow.Int32Type:
		return delta.Integer, nil
	case *arrow.Int16Type:
		return delta.Short, nil
	case *arrow.Int8Type:
		return delta.Byte, nil
	case *arrow.Float32Type:
		return delta.Float, nil
	case *arrow.Float64Type:
		return delta.Double, nil
	case *arrow.BooleanType:
		return delta.Boolean, nil
	case *arrow.Date32Type, *arrow.Date64Type:
		return delta.Date, nil
	case *arrow.TimestampType:
		if v.TimeZone == "" {
			return delta.TimestampNTZ, nil
		}
		return delta.Timestamp, nil
	case *arrow.Decimal128Type:
		return &delta.DecimalType{Precision: int(v.Precision), Scale: int(v.Scale)}, nil
	case *arrow.NullType:
		return delta.Void, nil
	case *arrow.StructType:
		return deltaStruct(v.Fields())
	case *arrow.MapType:
		kt, err := deltaType(v.KeyType())
		if err != nil {
			return nil, fmt.Errorf("map key: %w", err)
		}
		vt, err := deltaType(v.ItemType())
		if err != nil {
			return nil, fmt.Errorf("map value: %w", err)
		}
		return &delta.MapType{KeyType: kt, ValueType: vt, ValueContainsNull: v.ItemField().Nullable}, nil
	case arrow.ListLikeType:
		et, err := deltaType(v.Elem())
		if err != nil {
			return nil, fmt.Errorf("array element: %w", err)
		}
		return &delta.ArrayType{ElementType: et, ContainsNull: v.ElemField().Nullable}, nil
	}
	return nil, fmt.Errorf("arrow type %s has no Delta equivalent", t)
}
