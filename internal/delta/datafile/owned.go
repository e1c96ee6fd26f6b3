package datafile

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
)

// Value is one value copied out of an Arrow array, owned by the caller (it
// stays valid after the array is released).
type Value struct {
	Null bool
	V    any // int8..int64, float32/64, bool, string, []byte, arrow.Timestamp, arrow.Date32, decimal128.Num; else the text form
}

// CopyValue copies row i of a.
func CopyValue(a arrow.Array, i int) Value {
	if a.IsNull(i) {
		return Value{Null: true}
	}
	switch c := a.(type) {
	case *array.Int64:
		return Value{V: c.Value(i)}
	case *array.Int32:
		return Value{V: c.Value(i)}
	case *array.Int16:
		return Value{V: c.Value(i)}
	case *array.Int8:
		return Value{V: c.Value(i)}
	case *array.Float64:
		return Value{V: c.Value(i)}
	case *array.Float32:
		return Value{V: c.Value(i)}
	case *array.String:
		return Value{V: c.Value(i)}
	case *array.Boolean:
		return Value{V: c.Value(i)}
	case *array.Timestamp:
		return Value{V: c.Value(i)}
	case *array.Date32:
		return Value{V: c.Value(i)}
	case *array.Decimal128:
		return Value{V: c.Value(i)}
	case *array.Binary:
		return Value{V: append([]byte(nil), c.Value(i)...)}
	}
	return Value{V: a.ValueStr(i)}
}

// AppendValue appends v to b, whose type must match the array v was copied
// from (a text-form value is parsed by the builder).
func AppendValue(b array.Builder, v Value) error {
	if v.Null {
		b.AppendNull()
		return nil
	}
	switch x := v.V.(type) {
	case int64:
		b.(*array.Int64Builder).Append(x)
	case int32:
		b.(*array.Int32Builder).Append(x)
	case int16:
		b.(*array.Int16Builder).Append(x)
	case int8:
		b.(*array.Int8Builder).Append(x)
	case float64:
		b.(*array.Float64Builder).Append(x)
	case float32:
		b.(*array.Float32Builder).Append(x)
	case bool:
		b.(*array.BooleanBuilder).Append(x)
	case arrow.Timestamp:
		b.(*array.TimestampBuilder).Append(x)
	case arrow.Date32:
		b.(*array.Date32Builder).Append(x)
	case decimal128.Num:
		b.(*array.Decimal128Builder).Append(x)
	case []byte:
		b.(*array.BinaryBuilder).Append(x)
	case string:
		if sb, ok := b.(*array.StringBuilder); ok {
			sb.Append(x)
			return nil
		}
		return b.AppendValueFromString(x)
	default:
		return fmt.Errorf("datafile: cannot append a %T", v.V)
	}
	return nil
}
