package datafile

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
)

// valueAt returns row i of a primitive array as the Go value
// ParsePartitionValue would produce for it (nil for null). The []byte of a
// binary value aliases the array's buffer.
func valueAt(a arrow.Array, i int) (any, error) {
	if a.IsNull(i) {
		return nil, nil
	}
	switch x := a.(type) {
	case *array.String:
		return x.Value(i), nil
	case *array.Binary:
		return x.Value(i), nil
	case *array.Int64:
		return x.Value(i), nil
	case *array.Int32:
		return x.Value(i), nil
	case *array.Int16:
		return x.Value(i), nil
	case *array.Int8:
		return x.Value(i), nil
	case *array.Float32:
		return x.Value(i), nil
	case *array.Float64:
		return x.Value(i), nil
	case *array.Boolean:
		return x.Value(i), nil
	case *array.Date32:
		return x.Value(i), nil
	case *array.Timestamp:
		return x.Value(i), nil
	case *array.Decimal128:
		return x.Value(i), nil
	case *array.Null:
		return nil, nil
	}
	return nil, fmt.Errorf("unsupported partition column type %s", a.DataType())
}

// appendGo appends a ParsePartitionValue result to a builder of the
// matching Arrow type.
func appendGo(b array.Builder, v any) error {
	if v == nil {
		b.AppendNull()
		return nil
	}
	ok := true
	switch bb := b.(type) {
	case *array.StringBuilder:
		var s string
		if s, ok = v.(string); ok {
			bb.Append(s)
		}
	case *array.BinaryBuilder:
		var s []byte
		if s, ok = v.([]byte); ok {
			bb.Append(s)
		}
	case *array.Int64Builder:
		var x int64
		if x, ok = v.(int64); ok {
			bb.Append(x)
		}
	case *array.Int32Builder:
		var x int32
		if x, ok = v.(int32); ok {
			bb.Append(x)
		}
	case *array.Int16Builder:
		var x int16
		if x, ok = v.(int16); ok {
			bb.Append(x)
		}
	case *array.Int8Builder:
		var x int8
		if x, ok = v.(int8); ok {
			bb.Append(x)
		}
	case *array.Float32Builder:
		var x float32
		if x, ok = v.(float32); ok {
			bb.Append(x)
		}
	case *array.Float64Builder:
		var x float64
		if x, ok = v.(float64); ok {
			bb.Append(x)
		}
	case *array.BooleanBuilder:
		var x bool
		if x, ok = v.(bool); ok {
			bb.Append(x)
		}
	case *array.Date32Builder:
		var x arrow.Date32
		if x, ok = v.(arrow.Date32); ok {
			bb.Append(x)
		}
	case *array.TimestampBuilder:
		var x arrow.Timestamp
		if x, ok = v.(arrow.Timestamp); ok {
			bb.Append(x)
		}
	case *array.Decimal128Builder:
		var x decimal128.Num
		if x, ok = v.(decimal128.Num); ok {
			bb.Append(x)
		}
	default:
		ok = false
	}
	if !ok {
		return fmt.Errorf("cannot append %T to %s", v, b.Type())
	}
	return nil
}
