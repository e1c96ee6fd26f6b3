package silver

import "github.com/silt-dev/silt/internal/delta/ops"

// keyString renders key cells as one comparable string.
func keyString(buf []byte, cells []ops.Cell) string {
	return string(appendKey(buf[:0], cells))
}

// appendKey appends keyString's bytes to buf.
func appendKey(buf []byte, cells []ops.Cell) []byte {
	for i, c := range cells {
		if i > 0 {
			buf = append(buf, 0)
		}
		if c.Null() {
			buf = append(buf, 1)
			continue
		}
		buf = append(buf, c.Arr.ValueStr(c.Row)...)
	}
	return buf
}
