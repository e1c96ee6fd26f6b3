package silver

import "github.com/silt-dev/silt/internal/delta/ops"

// appendKey appends key cells to buf rendered as one comparable key (a
// micro-batch's key strings, which tombstones are keyed by, too).
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
