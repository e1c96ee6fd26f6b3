package silver

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// cell points at one value in a column of a record that stays alive for the
// duration of a micro-batch.
type cell struct {
	arr arrow.Array
	i   int
}

func (c cell) null() bool { return c.arr == nil || c.arr.IsNull(c.i) }

// appendCell appends the value c points at to b (of the same Arrow type).
func appendCell(b array.Builder, c cell) error {
	if c.null() {
		b.AppendNull()
		return nil
	}
	switch a := c.arr.(type) {
	case *array.Boolean:
		b.(*array.BooleanBuilder).Append(a.Value(c.i))
	case *array.Int8:
		b.(*array.Int8Builder).Append(a.Value(c.i))
	case *array.Int16:
		b.(*array.Int16Builder).Append(a.Value(c.i))
	case *array.Int32:
		b.(*array.Int32Builder).Append(a.Value(c.i))
	case *array.Int64:
		b.(*array.Int64Builder).Append(a.Value(c.i))
	case *array.Float32:
		b.(*array.Float32Builder).Append(a.Value(c.i))
	case *array.Float64:
		b.(*array.Float64Builder).Append(a.Value(c.i))
	case *array.String:
		b.(*array.StringBuilder).Append(a.Value(c.i))
	case *array.Binary:
		b.(*array.BinaryBuilder).Append(a.Value(c.i))
	case *array.Date32:
		b.(*array.Date32Builder).Append(a.Value(c.i))
	case *array.Timestamp:
		b.(*array.TimestampBuilder).Append(a.Value(c.i))
	case *array.Decimal128:
		b.(*array.Decimal128Builder).Append(a.Value(c.i))
	default:
		if err := b.AppendValueFromString(c.arr.ValueStr(c.i)); err != nil {
			return fmt.Errorf("copy %s value: %w", c.arr.DataType(), err)
		}
	}
	return nil
}

// keyString renders key cells as one comparable string.
func keyString(buf []byte, cells []cell) string {
	buf = buf[:0]
	for i, c := range cells {
		if i > 0 {
			buf = append(buf, 0)
		}
		if c.null() {
			buf = append(buf, 1)
			continue
		}
		buf = append(buf, c.arr.ValueStr(c.i)...)
	}
	return string(buf)
}
