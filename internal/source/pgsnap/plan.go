package pgsnap

// Range is a range of heap blocks [Lo, Hi) of one table, read by one chunk
// with `ctid >= '(Lo,0)' AND ctid < '(Hi,0)'`. Open marks the table's last
// range, read without an upper bound: rows in blocks added after planning
// are included (they can only hold row versions the snapshot does not see,
// but an open end costs nothing and guards against a wrong block count).
type Range struct {
	Lo   uint32 `json:"lo"`
	Hi   uint32 `json:"hi"`
	Open bool   `json:"open,omitempty"`
}

// PlanRanges splits a table of pages heap blocks, holding about
// rowsPerPage rows each, into ranges of about chunkRows rows. The ranges
// cover [0, ∞) without gaps or overlap; the last one is open. A table with
// no pages gets one open range. At most maxChunks ranges are made (the
// chunks grow instead); maxChunks <= 0 means no limit.
func PlanRanges(pages uint32, rowsPerPage float64, chunkRows int64, maxChunks int) []Range {
	if pages == 0 {
		return []Range{{Lo: 0, Hi: 0, Open: true}}
	}
	if rowsPerPage <= 0 {
		rowsPerPage = 1
	}
	if chunkRows <= 0 {
		chunkRows = 1
	}
	per := uint64(float64(chunkRows) / rowsPerPage) // blocks per chunk
	if per < 1 {
		per = 1
	}
	n := (uint64(pages) + per - 1) / per
	if maxChunks > 0 && n > uint64(maxChunks) {
		n = uint64(maxChunks)
		per = (uint64(pages) + n - 1) / n
		n = (uint64(pages) + per - 1) / per
	}
	out := make([]Range, 0, n)
	for lo := uint64(0); lo < uint64(pages); lo += per {
		hi := min(lo+per, uint64(pages))
		out = append(out, Range{Lo: uint32(lo), Hi: uint32(hi)})
	}
	out[len(out)-1].Open = true
	return out
}

// Contains reports whether block b is in r.
func (r Range) Contains(b uint32) bool {
	return b >= r.Lo && (r.Open || b < r.Hi)
}
