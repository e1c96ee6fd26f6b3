// Package lakeh is a test harness for the lake stages without PostgreSQL:
// it appends hand-made change transactions to an embedded stream, runs the
// Bronze writer until it has consumed the stream, and runs Silver
// micro-batches until they catch up.
package lakeh

import (
	"context"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/blob/local"
	"github.com/silt-dev/silt/internal/bronze"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/silver"
	"github.com/silt-dev/silt/internal/stream"
	"github.com/silt-dev/silt/internal/stream/locallog"
)

// H is one harness: a local lake and a 2-shard embedded log.
type H struct {
	T     testing.TB
	Store *local.Store
	Log   *locallog.Log
	LSN   change.LSN
	// Base is the commit time of LSN 0; commit time grows 1s per LSN unit.
	Base time.Time
}

// New returns a harness on temp dirs.
func New(t testing.TB) *H {
	st, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st.NoSync = true
	lg, err := locallog.Open(t.TempDir(), locallog.Options{Shards: 2, Durability: locallog.DurabilityNone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	return &H{T: t, Store: st, Log: lg, LSN: 100, Base: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// Txn appends one transaction; each change's Rel must be set. LSN, Pos,
// EndLSN and CommitTime are assigned.
func (h *H) Txn(cs ...*change.Change) {
	h.LSN += 10
	h.TxnAt(h.LSN, cs...)
}

// TxnAt appends one transaction with the given commit LSN, which may be
// older than what was appended before (to simulate replays and reordering).
func (h *H) TxnAt(lsn change.LSN, cs ...*change.Change) {
	var entries []stream.Entry
	for i, c := range cs {
		c.LSN, c.Pos, c.EndLSN, c.CommitTime = lsn, uint32(i), lsn+1, h.Base.Add(time.Duration(lsn)*time.Second)
		key := []byte("k")
		if c.New != nil {
			key = c.New[0].Data
		} else if c.Old != nil {
			key = c.Old[0].Data
		}
		entries = append(entries, stream.Entry{PartitionKey: key, Data: change.AppendEncode(nil, c)})
	}
	if err := h.Log.Append(context.Background(), entries); err != nil {
		h.T.Fatal(err)
	}
}

// Bronze runs the Bronze writer until it has consumed the stream.
func (h *H) Bronze() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	w := bronze.NewWriter(h.Store, h.Log, bronze.Options{FlushInterval: 10 * time.Millisecond, OnProgress: func(pos []int64) {
		for s, p := range pos {
			end, _ := h.Log.End(context.Background(), s)
			if p < end {
				return
			}
		}
		cancel()
	}})
	go func() { done <- w.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			h.T.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		h.T.Fatal("bronze did not catch up within 30s")
	}
}

// Silver runs Silver micro-batches for table until caught up and returns how
// many merged something.
func (h *H) Silver(table change.TableID) int {
	p := silver.New(h.Store, silver.Options{})
	n := 0
	for {
		res, err := p.Process(context.Background(), table)
		if err != nil {
			h.T.Fatal(err)
		}
		if res.ToVersion < 0 {
			return n
		}
		n++
	}
}

// Text is a text datum.
func Text(s string) change.Datum { return change.Datum{Kind: change.Text, Data: []byte(s)} }

// Null is a NULL datum.
var Null = change.Datum{Kind: change.Null}

// SilverWith runs Silver micro-batches with the given options until caught up.
func (h *H) SilverWith(table change.TableID, opts silver.Options) int {
	p := silver.New(h.Store, opts)
	n := 0
	for {
		res, err := p.Process(context.Background(), table)
		if err != nil {
			h.T.Fatal(err)
		}
		if res.ToVersion < 0 {
			return n
		}
		n++
	}
}
