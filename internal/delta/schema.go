package delta

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// DataType is a Delta data type: *PrimitiveType, *DecimalType, *StructType,
// *ArrayType or *MapType.
type DataType interface {
	// TypeName is the Delta type string ("long", "decimal(10,2)", "struct", ...).
	TypeName() string
}

// PrimitiveType is one of the named primitive types.
type PrimitiveType struct{ Name string }

func (p *PrimitiveType) TypeName() string { return p.Name }

// Primitive type singletons.
var (
	String       = &PrimitiveType{"string"}
	Long         = &PrimitiveType{"long"}
	Integer      = &PrimitiveType{"integer"}
	Short        = &PrimitiveType{"short"}
	Byte         = &PrimitiveType{"byte"}
	Float        = &PrimitiveType{"float"}
	Double       = &PrimitiveType{"double"}
	Boolean      = &PrimitiveType{"boolean"}
	Binary       = &PrimitiveType{"binary"}
	Date         = &PrimitiveType{"date"}
	Timestamp    = &PrimitiveType{"timestamp"}
	TimestampNTZ = &PrimitiveType{"timestamp_ntz"}
	Void         = &PrimitiveType{"void"}
)

var primitives = map[string]*PrimitiveType{}

func init() {
	for _, p := range []*PrimitiveType{String, Long, Integer, Short, Byte, Float, Double, Boolean, Binary, Date, Timestamp, TimestampNTZ, Void} {
		primitives[p.Name] = p
	}
}

// DecimalType is decimal(precision, scale).
type DecimalType struct{ Precision, Scale int }

func (d *DecimalType) TypeName() string { return fmt.Sprintf("decimal(%d,%d)", d.Precision, d.Scale) }

// StructField is one field of a struct.
type StructField struct {
	Name     string         `json:"name"`
	Type     DataType       `json:"-"`
	Nullable bool           `json:"nullable"`
	Metadata map[string]any `json:"metadata"`
}

// StructType is a struct (and the root of a table schema).
type StructType struct {
	Fields []*StructField
}

func (s *StructType) TypeName() string { return "struct" }

// Field returns the field with the given name (case-insensitive, as Delta
// names are), or nil.
func (s *StructType) Field(name string) *StructField {
	for _, f := range s.Fields {
		if strings.EqualFold(f.Name, name) {
			return f
		}
	}
	return nil
}

// ArrayType is array<element>.
type ArrayType struct {
	ElementType  DataType
	ContainsNull bool
}

func (a *ArrayType) TypeName() string { return "array" }

// MapType is map<key,value>.
type MapType struct {
	KeyType           DataType
	ValueType         DataType
	ValueContainsNull bool
}

func (m *MapType) TypeName() string { return "map" }

var decimalRe = regexp.MustCompile(`^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$`)

// ParseSchema parses metaData.schemaString.
func ParseSchema(s string) (*StructType, error) {
	var raw json.RawMessage = []byte(s)
	t, err := parseType(raw)
	if err != nil {
		return nil, fmt.Errorf("parse schemaString: %w", err)
	}
	st, ok := t.(*StructType)
	if !ok {
		return nil, fmt.Errorf("parse schemaString: root is %s, want struct", t.TypeName())
	}
	return st, nil
}

func parseType(raw json.RawMessage) (DataType, error) {
	var name string
	if err := json.Unmarshal(raw, &name); err == nil {
		if p, ok := primitives[name]; ok {
			return p, nil
		}
		if name == "decimal" {
			return &DecimalType{Precision: 10, Scale: 0}, nil
		}
		if m := decimalRe.FindStringSubmatch(name); m != nil {
			p, _ := strconv.Atoi(m[1])
			sc, _ := strconv.Atoi(m[2])
			if p < 1 || p > 38 || sc > p {
				return nil, fmt.Errorf("invalid decimal type %q", name)
			}
			return &DecimalType{Precision: p, Scale: sc}, nil
		}
		return nil, fmt.Errorf("unsupported data type %q", name)
	}
	var obj struct {
		Type              string            `json:"type"`
		Fields            []json.RawMessage `json:"fields"`
		ElementType       json.RawMessage   `json:"elementType"`
		ContainsNull      bool              `json:"containsNull"`
		KeyType           json.RawMessage   `json:"keyType"`
		ValueType         json.RawMessage   `json:"valueType"`
		ValueContainsNull bool              `json:"valueContainsNull"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("invalid type %s: %w", truncate(string(raw)), err)
	}
	switch obj.Type {
	case "struct":
		st := &StructType{}
		seen := map[string]bool{}
		for _, fr := range obj.Fields {
			var f struct {
				Name     string          `json:"name"`
				Type     json.RawMessage `json:"type"`
				Nullable bool            `json:"nullable"`
				Metadata map[string]any  `json:"metadata"`
			}
			if err := json.Unmarshal(fr, &f); err != nil {
				return nil, fmt.Errorf("invalid struct field %s: %w", truncate(string(fr)), err)
			}
			lower := strings.ToLower(f.Name)
			if seen[lower] {
				return nil, fmt.Errorf("duplicate field name %q", f.Name)
			}
			seen[lower] = true
			ft, err := parseType(f.Type)
			if err != nil {
				return nil, fmt.Errorf("field %q: %w", f.Name, err)
			}
			if f.Metadata == nil {
				f.Metadata = map[string]any{}
			}
			st.Fields = append(st.Fields, &StructField{Name: f.Name, Type: ft, Nullable: f.Nullable, Metadata: f.Metadata})
		}
		return st, nil
	case "array":
		et, err := parseType(obj.ElementType)
		if err != nil {
			return nil, fmt.Errorf("array element: %w", err)
		}
		return &ArrayType{ElementType: et, ContainsNull: obj.ContainsNull}, nil
	case "map":
		kt, err := parseType(obj.KeyType)
		if err != nil {
			return nil, fmt.Errorf("map key: %w", err)
		}
		vt, err := parseType(obj.ValueType)
		if err != nil {
			return nil, fmt.Errorf("map value: %w", err)
		}
		return &MapType{KeyType: kt, ValueType: vt, ValueContainsNull: obj.ValueContainsNull}, nil
	}
	return nil, fmt.Errorf("unsupported complex type %q", obj.Type)
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// typeJSON returns the JSON value for a type.
func typeJSON(t DataType) any {
	switch v := t.(type) {
	case *StructType:
		fields := make([]any, 0, len(v.Fields))
		for _, f := range v.Fields {
			md := f.Metadata
			if md == nil {
				md = map[string]any{}
			}
			fields = append(fields, map[string]any{
				"name": f.Name, "type": typeJSON(f.Type), "nullable": f.Nullable, "metadata": md,
			})
		}
		return map[string]any{"type": "struct", "fields": fields}
	case *ArrayType:
		return map[string]any{"type": "array", "elementType": typeJSON(v.ElementType), "containsNull": v.ContainsNull}
	case *MapType:
		return map[string]any{"type": "map", "keyType": typeJSON(v.KeyType), "valueType": typeJSON(v.ValueType), "valueContainsNull": v.ValueContainsNull}
	default:
		return t.TypeName()
	}
}

// SchemaString serialises the schema for metaData.schemaString.
func (s *StructType) SchemaString() string {
	b, err := json.Marshal(typeJSON(s))
	if err != nil {
		panic(err) // only maps, slices and strings: cannot fail
	}
	return string(b)
}
