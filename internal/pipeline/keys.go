package pipeline

import (
	"net/url"
	"strings"

	"github.com/silt-dev/silt/internal/change"
)

// PartitionKey returns the stream partition key of a change:
//
//	primary-key:  "schema.table" + the key column values (per-key order kept)
//	schema-table: "schema.table" (per-table order; one hot shard per busy table)
//	constant:     "silt" (one shard; total order)
func PartitionKey(strategy string, c *change.Change) []byte {
	switch strategy {
	case "constant":
		return []byte("silt")
	case "schema-table":
		return []byte(c.Rel.Table.String())
	}
	key := make([]byte, 0, 64)
	key = append(key, c.Rel.Table.Schema...)
	key = append(key, '.')
	key = append(key, c.Rel.Table.Name...)
	img := c.New
	if c.Op == change.OpDelete || img == nil {
		img = c.Old
	}
	for i, col := range c.Rel.Columns {
		if !col.Key || i >= len(img) {
			continue
		}
		key = append(key, 0)
		key = append(key, img[i].Data...)
	}
	return key
}

// SessionDSN adds the session settings silt's text decoding relies on (UTC,
// ISO dates, hex bytea) to a DSN in either URL or keyword form.
func SessionDSN(dsn string) string {
	const opts = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c bytea_output=hex -c IntervalStyle=postgres -c extra_float_digits=3"
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn
		}
		q := u.Query()
		q.Set("options", strings.TrimSpace(q.Get("options")+" "+opts))
		// url.Values encodes spaces as '+', which libpq-style parsers keep literally.
		u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
		return u.String()
	}
	return strings.TrimSpace(dsn) + " options='" + opts + "'"
}
