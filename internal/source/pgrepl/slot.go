package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/change"
)

// SlotStats describes the replication slot as the server sees it.
type SlotStats struct {
	Slot      string
	Active    bool
	ActivePID int32 // walsender PID while a consumer streams; 0 otherwise
	// ConfirmedFlushLSN is what the consumer acknowledged; RestartLSN the
	// oldest WAL the slot keeps; CurrentLSN the server's WAL position.
	ConfirmedFlushLSN, RestartLSN, CurrentLSN change.LSN
	// LagBytes is CurrentLSN - ConfirmedFlushLSN: WAL not yet acknowledged.
	LagBytes int64
	// RetainedWALBytes is CurrentLSN - RestartLSN: WAL kept on disk for the slot.
	RetainedWALBytes int64
	// WALStatus is reserved, extended, unreserved or lost (PostgreSQL 13+).
	WALStatus string
	// SafeWALSize is how many more bytes can be written before the slot is
	// invalidated by max_slot_wal_keep_size; -1 when unlimited.
	SafeWALSize int64
	// SampledAt is when the figures were read.
	SampledAt time.Time
}

// Stats are the Source's counters and its latest slot sample.
type Stats struct {
	Transactions   int64 // transactions delivered completely
	Batches        int64 // handler calls
	SpilledTxns    int64 // transactions that went through a spill file
	HeartbeatsSent int64
	// Slot is the latest sample taken by the heartbeat loop (zero until
	// the first one).
	Slot SlotStats
}

type statCounters struct {
	transactions, batches, spilledTxns, heartbeats atomic.Int64
	mu                                             sync.Mutex
	slot                                           SlotStats
}

// Stats returns current counters and the latest slot sample. Safe for
// concurrent use.
func (s *Source) Stats() Stats {
	s.stats.mu.Lock()
	slot := s.stats.slot
	s.stats.mu.Unlock()
	return Stats{
		Transactions: s.stats.transactions.Load(), Batches: s.stats.batches.Load(),
		SpilledTxns: s.stats.spilledTxns.Load(), HeartbeatsSent: s.stats.heartbeats.Load(),
		Slot: slot,
	}
}

const slotStatsSQL = `SELECT s.active, coalesce(s.active_pid, 0)::int4,
	coalesce(s.confirmed_flush_lsn::text, '0/0'), coalesce(s.restart_lsn::text, '0/0'), pg_current_wal_lsn()::text,
	coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::int8,
	coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn), 0)::int8,
	coalesce(s.wal_status, ''), coalesce(s.safe_wal_size, -1)::int8
FROM pg_replication_slots s WHERE s.slot_name = $1`

func readSlotStats(ctx context.Context, conn *pgx.Conn, slot string) (SlotStats, error) {
	st := SlotStats{Slot: slot, SampledAt: time.Now()}
	var confirmed, restart, current string
	err := conn.QueryRow(ctx, slotStatsSQL, slot).Scan(&st.Active, &st.ActivePID, &confirmed, &restart, &current,
		&st.LagBytes, &st.RetainedWALBytes, &st.WALStatus, &st.SafeWALSize)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, &SlotError{Slot: slot, Err: ErrSlotNotFound}
	}
	if err != nil {
		return st, fmt.Errorf("read slot %s: %w", slot, err)
	}
	for _, p := range []struct {
		dst *change.LSN
		s   string
	}{{&st.ConfirmedFlushLSN, confirmed}, {&st.RestartLSN, restart}, {&st.CurrentLSN, current}} {
		if *p.dst, err = change.ParseLSN(p.s); err != nil {
			return st, fmt.Errorf("read slot %s: %w", slot, err)
		}
	}
	return st, nil
}

// ReadSlotStats connects to the database and reads the slot's figures.
// password, if not empty, replaces the DSN's. It returns a *SlotError
// wrapping ErrSlotNotFound when there is no such slot.
func ReadSlotStats(ctx context.Context, dsn, password, slot string) (SlotStats, error) {
	conn, err := connect(ctx, dsn, password)
	if err != nil {
		return SlotStats{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return readSlotStats(ctx, conn, slot)
}

// heartbeatLoop runs beside one Run (which owns and waits for it): every
// HeartbeatInterval it emits a heartbeat message if no transaction was
// delivered meanwhile, samples the slot and warns when the lag passes
// LagWarnBytes. Its failures never stop Run: they are logged, and the
// replication connection reports real trouble on its own.
func (s *Source) heartbeatLoop(ctx context.Context) {
	iv := s.cfg.HeartbeatInterval
	if iv < 0 {
		return
	}
	log := s.cfg.Logger
	t := time.NewTicker(iv)
	defer t.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			conn.Close(cctx)
			cancel()
		}
	}()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if conn == nil {
			c, err := connect(ctx, s.cfg.DSN, s.cfg.Password)
			if err != nil {
				if ctx.Err() == nil && failures%10 == 0 { // the replication loop reports outages; stay quiet
					log.Warn("heartbeat: cannot connect", "slot", s.cfg.Slot, "err", err)
				}
				failures++
				continue
			}
			conn = c
		}
		err := s.heartbeat(ctx, conn, iv)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if failures%10 == 0 {
				log.Warn("heartbeat failed", "slot", s.cfg.Slot, "err", err)
			}
			failures++
			conn.Close(context.WithoutCancel(ctx))
			conn = nil
			continue
		}
		failures = 0
	}
}

func (s *Source) heartbeat(ctx context.Context, conn *pgx.Conn, iv time.Duration) error {
	qctx, cancel := context.WithTimeout(ctx, max(iv, 5*time.Second))
	defer cancel()
	if last := s.lastDelivery.Load(); time.Since(time.Unix(0, last)) >= iv {
		// Transactional, so that it is decoded as a transaction of its own
		// whose end LSN can be acknowledged. Databases are separate in
		// logical decoding: the message must be written in this database.
		if _, err := conn.Exec(qctx, "SELECT pg_logical_emit_message(true, $1, $2)", HeartbeatPrefix, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
			return fmt.Errorf("emit heartbeat: %w", err)
		}
		s.stats.heartbeats.Add(1)
	}
	st, err := readSlotStats(qctx, conn, s.cfg.Slot)
	if err != nil {
		return err
	}
	s.stats.mu.Lock()
	s.stats.slot = st
	s.stats.mu.Unlock()
	if s.cfg.LagWarnBytes > 0 && st.LagBytes > s.cfg.LagWarnBytes {
		s.cfg.Logger.Warn("replication slot lag is high: silt is not keeping up, or Bronze is not committing",
			"slot", s.cfg.Slot, "lag_bytes", st.LagBytes, "retained_wal_bytes", st.RetainedWALBytes,
			"threshold_bytes", s.cfg.LagWarnBytes, "wal_status", st.WALStatus)
	}
	return nil
}

var kvPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]*)`)

// RedactDSN returns dsn with any password replaced by "xxxxx", for logs and
// messages. It handles URLs (user:password@ and ?password=) and key=value
// strings.
func RedactDSN(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "(unparseable DSN)"
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return kvPassword.ReplaceAllString(dsn, "${1}xxxxx")
}

// formatBytes prints a byte count for humans (1.5 GiB).
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f, i := float64(n), 0
	for f >= unit*unit || f <= -unit*unit {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f/unit, "KMGTPE"[i])
}
