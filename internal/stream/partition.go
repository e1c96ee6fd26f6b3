package stream

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/silt-dev/silt/internal/change"
)

// Partition key strategies. The names follow AWS DMS's partition-key-type
// where DMS has one; "columns" is DMS's attribute-name.
const (
	// KeyPrimaryKey: "schema.table" + the key column values. Every change of
	// a row goes to the same shard, in order. The default.
	KeyPrimaryKey = "primary-key"
	// KeyColumns: "schema.table" + the values of the chosen columns (for
	// example tag_id and ts). A table that lacks one of them falls back to
	// primary-key.
	KeyColumns = "columns"
	// KeySchemaTable: "schema.table". Per-table order; one shard per table.
	KeySchemaTable = "schema-table"
	// KeyTransactionID: the source transaction id. A transaction stays on
	// one shard.
	KeyTransactionID = "transaction-id"
	// KeyConstant: one key for everything. Total order on one shard.
	KeyConstant = "constant"
	// KeyRandom: a key derived from (commit LSN, position), so records
	// spread evenly, and a change resent after a restart still takes the
	// same shard (the pipeline's restart de-duplication needs that).
	KeyRandom = "random"
)

// Strategies lists the partition key strategies, default first.
var Strategies = []string{KeyPrimaryKey, KeyColumns, KeySchemaTable, KeyTransactionID, KeyConstant, KeyRandom}

// MaxKeyBytes bounds the partition keys a Partitioner returns. Kinesis
// takes keys of at most 256 characters, and the Kinesis log escapes
// non-printable bytes; a longer key is replaced by "#" + the hex MD5 of
// the long key, which keeps "same row, same key" and so the shard.
const MaxKeyBytes = 64

// PartitionConfig configures a Partitioner.
type PartitionConfig struct {
	// Strategy is one of Strategies; empty means primary-key.
	Strategy string
	// Columns are the column names of the columns strategy, in key order.
	Columns []string
}

// Partitioner computes the partition key of a change. It is safe for
// concurrent use.
type Partitioner struct {
	strategy string
	columns  []string

	mu       sync.Mutex
	colIdx   map[*change.Relation][]int // per relation: column positions, nil = fall back
	fallback map[change.TableID]bool    // tables that lack a chosen column
	onFall   func(change.TableID, string)
}

// NewPartitioner validates cfg and returns its Partitioner. onFallback, if
// not nil, is called once per table for which the columns strategy falls
// back to primary-key, with the reason.
func NewPartitioner(cfg PartitionConfig, onFallback func(t change.TableID, why string)) (*Partitioner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := cfg.Strategy
	if s == "" {
		s = KeyPrimaryKey
	}
	return &Partitioner{
		strategy: s,
		columns:  append([]string(nil), cfg.Columns...),
		colIdx:   map[*change.Relation][]int{},
		fallback: map[change.TableID]bool{},
		onFall:   onFallback,
	}, nil
}

// Validate reports every problem with cfg at once.
func (cfg PartitionConfig) Validate() error {
	var errs []error
	known := cfg.Strategy == ""
	for _, s := range Strategies {
		known = known || cfg.Strategy == s
	}
	if !known {
		errs = append(errs, fmt.Errorf("partition key strategy %q is not one of %v", cfg.Strategy, Strategies))
	}
	if cfg.Strategy == KeyColumns && len(cfg.Columns) == 0 {
		errs = append(errs, errors.New("partition key strategy columns needs at least one column name"))
	}
	if cfg.Strategy != KeyColumns && len(cfg.Columns) > 0 {
		errs = append(errs, fmt.Errorf("partition key columns %v are set but the strategy is %q, not columns", cfg.Columns, cfg.Strategy))
	}
	seen := map[string]bool{}
	for _, c := range cfg.Columns {
		switch {
		case !validColumn(c):
			errs = append(errs, fmt.Errorf("partition key column %q is not a column name (1 to 63 characters, no NUL)", c))
		case seen[c]:
			errs = append(errs, fmt.Errorf("partition key column %q is listed twice", c))
		}
		seen[c] = true
	}
	return errors.Join(errs...)
}

func validColumn(c string) bool {
	if c == "" || len(c) > 63 {
		return false
	}
	for i := 0; i < len(c); i++ {
		if c[i] == 0 {
			return false
		}
	}
	return true
}

// Strategy returns the strategy name.
func (p *Partitioner) Strategy() string { return p.strategy }

// Key returns the partition key of c in a new slice.
func (p *Partitioner) Key(c *change.Change) []byte { return p.AppendKey(nil, c) }

// AppendKey appends the partition key of c to dst. The key is at most
// MaxKeyBytes long.
func (p *Partitioner) AppendKey(dst []byte, c *change.Change) []byte {
	start := len(dst)
	switch p.strategy {
	case KeyConstant:
		return append(dst, "silt"...)
	case KeySchemaTable:
		dst = appendTable(dst, c.Rel.Table)
	case KeyTransactionID:
		return strconv.AppendUint(dst, uint64(c.XID), 10)
	case KeyRandom:
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], mix64(uint64(c.LSN)^mix64(uint64(c.Pos)+1)))
		return hex.AppendEncode(dst, b[:])
	case KeyColumns:
		if idx := p.columnIndexes(c.Rel); idx != nil {
			dst = appendTable(dst, c.Rel.Table)
			img := image(c)
			for _, i := range idx {
				dst = append(dst, 0)
				if i < len(img) {
					dst = append(dst, img[i].Data...)
				}
			}
			break
		}
		fallthrough
	default: // primary-key
		dst = appendTable(dst, c.Rel.Table)
		img := image(c)
		for i, col := range c.Rel.Columns {
			if !col.Key || i >= len(img) {
				continue
			}
			dst = append(dst, 0)
			dst = append(dst, img[i].Data...)
		}
	}
	if len(dst)-start > MaxKeyBytes {
		sum := md5.Sum(dst[start:])
		dst = append(dst[:start], '#')
		dst = hex.AppendEncode(dst, sum[:])
	}
	return dst
}

// image is the row image that identifies the row: the old one for a
// delete, else the new one.
func image(c *change.Change) []change.Datum {
	if c.Op == change.OpDelete || c.New == nil {
		return c.Old
	}
	return c.New
}

func appendTable(dst []byte, t change.TableID) []byte {
	dst = append(dst, t.Schema...)
	dst = append(dst, '.')
	return append(dst, t.Name...)
}

// columnIndexes returns the positions of the chosen columns in rel, or nil
// when rel lacks one (the caller falls back to primary-key).
func (p *Partitioner) columnIndexes(rel *change.Relation) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if idx, ok := p.colIdx[rel]; ok {
		return idx
	}
	idx := make([]int, 0, len(p.columns))
	var missing []string
	for _, name := range p.columns {
		found := -1
		for i, col := range rel.Columns {
			if col.Name == name {
				found = i
				break
			}
		}
		if found < 0 {
			missing = append(missing, name)
		}
		idx = append(idx, found)
	}
	if missing != nil {
		idx = nil
		if !p.fallback[rel.Table] {
			p.fallback[rel.Table] = true
			if p.onFall != nil {
				p.onFall(rel.Table, fmt.Sprintf("table has no column %v; its partition key is primary-key", missing))
			}
		}
	}
	// Relations are immutable and few (one per table and schema version),
	// so the cache stays small.
	p.colIdx[rel] = idx
	return idx
}

// mix64 is the splitmix64 finaliser: a bijection that spreads nearby
// inputs (consecutive positions) over the whole key space.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Warnings says, for a stream of the given number of shards, how the
// strategy can make hot shards or weaken ordering. Empty when nothing is
// worth saying. Meant to be logged at startup.
func (p *Partitioner) Warnings(shards int) []string {
	var w []string
	switch p.strategy {
	case KeyConstant:
		if shards > 1 {
			w = append(w, fmt.Sprintf("partition key constant sends every record to one shard: %d of %d shards stay idle and throughput is capped at one shard (Kinesis: 1 MB/s or 1,000 records/s)", shards-1, shards))
		}
	case KeySchemaTable:
		w = append(w, "partition key schema-table puts all changes of a table on one shard: a busy table makes a hot shard capped at one shard's limit (Kinesis: 1 MB/s or 1,000 records/s) whatever the shard count; use primary-key to spread a table's rows")
	case KeyTransactionID:
		w = append(w, "partition key transaction-id puts a whole transaction on one shard: a large transaction makes a hot shard, and changes of one row in different transactions may take different shards, so per-row order across shards rests on (LSN, position) alone")
	case KeyRandom:
		w = append(w, "partition key random spreads records evenly but changes of one row take different shards, so per-row order across shards rests on (LSN, position) alone")
	case KeyColumns:
		w = append(w, fmt.Sprintf("partition key columns %v: a value that many changes share (a low-cardinality column, a popular tag) makes a hot shard; and unless the columns include the primary key, changes of one row can take different shards", p.columns))
	}
	return w
}
