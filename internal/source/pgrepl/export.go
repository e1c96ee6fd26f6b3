package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/silt-dev/silt/internal/change"
)

// ExportedSnapshot is the starting point of a slot created with an exported
// snapshot: the snapshot sees exactly the transactions committed before the
// slot's consistent point, and the slot delivers exactly the transactions
// committed at or after it. Importing the snapshot (SET TRANSACTION
// SNAPSHOT) is possible only while the SlotCreatedFunc runs.
type ExportedSnapshot struct {
	Slot string
	// ConsistentLSN is the slot's consistent point: every transaction the
	// slot delivers has a commit LSN >= ConsistentLSN.
	ConsistentLSN change.LSN
	// Name is the exported snapshot's name, for SET TRANSACTION SNAPSHOT.
	Name string
	// Created is when the slot was created (server clock read by silt).
	Created time.Time
}

// SlotCreatedFunc is called by CreateSlotWithSnapshot after it created the
// slot, while the exported snapshot can still be imported. It must import
// the snapshot into its own connections before returning; the export ends
// when it returns (imported copies live on). An error drops the new slot.
type SlotCreatedFunc func(ctx context.Context, snap ExportedSnapshot) error

// CreateSlotWithSnapshot prepares a slot for an initial load: it creates
// the publication if missing (it must predate the slot) and, if the slot is
// missing, creates it on a replication connection with
// CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export') and calls onCreated while
// the snapshot can be imported. It reports whether it created the slot.
// An existing slot is left alone (Open checks it). Call it before Open.
//
// The exporting connection stays idle while onCreated runs: the next
// command on it would end the snapshot. If onCreated fails, the new slot is
// dropped again, so that a later start creates it (and its snapshot) anew.
func CreateSlotWithSnapshot(ctx context.Context, cfg Config, onCreated SlotCreatedFunc) (created bool, err error) {
	if err := cfg.Validate(); err != nil {
		return false, err
	}
	if onCreated == nil {
		return false, errors.New("pgrepl: CreateSlotWithSnapshot needs a callback")
	}
	pcfg, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		return false, fmt.Errorf("%w: source.dsn: %w", ErrConfig, err)
	}
	if cfg.Password != "" {
		pcfg.Password = cfg.Password
	}
	conn, err := pgx.ConnectConfig(ctx, pcfg)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, newConnectError(&pcfg.Config, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", cfg.Slot).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up replication slot %s: %w", cfg.Slot, err)
	}
	if exists {
		return false, nil
	}
	if err := ensurePublication(ctx, conn, cfg.Publication, cfg.Tables); err != nil {
		return false, err
	}

	rcfg := pcfg.Config.Copy()
	rcfg.RuntimeParams["replication"] = "database"
	rconn, err := pgconn.ConnectConfig(ctx, rcfg)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, fmt.Errorf("replication connection: %w", newConnectError(rcfg, err))
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		rconn.Close(cctx)
	}()
	// The slot name was validated by Config.Validate (a-z, 0-9, _).
	slot := cfg.Slot
	sql := "CREATE_REPLICATION_SLOT " + slot + " LOGICAL pgoutput (SNAPSHOT 'export')"
	if serverMajor(rconn) < 15 {
		sql = "CREATE_REPLICATION_SLOT " + slot + " LOGICAL pgoutput EXPORT_SNAPSHOT"
	}
	res, err := rconn.Exec(ctx, sql).ReadAll()
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42710" {
			return false, nil // created concurrently by someone else
		}
		return false, fmt.Errorf("create replication slot %s: %w", slot, err)
	}
	snap, err := parseCreateSlot(res)
	if err != nil {
		return false, fmt.Errorf("create replication slot %s: %w", slot, err)
	}
	snap.Slot, snap.Created = slot, time.Now().UTC()
	if err := onCreated(ctx, snap); err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, derr := rconn.Exec(dctx, "DROP_REPLICATION_SLOT "+slot).ReadAll(); derr != nil {
			return false, fmt.Errorf("slot %s created but its snapshot failed: %w; dropping the slot failed too (drop it by hand): %v", slot, err, derr)
		}
		return false, fmt.Errorf("slot %s created but its snapshot failed (slot dropped again): %w", slot, err)
	}
	return true, nil
}

func parseCreateSlot(res []*pgconn.Result) (ExportedSnapshot, error) {
	var s ExportedSnapshot
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < 3 {
		return s, fmt.Errorf("%w: unexpected CREATE_REPLICATION_SLOT result", ErrProtocol)
	}
	row := res[0].Rows[0]
	lsn, err := change.ParseLSN(string(row[1]))
	if err != nil {
		return s, fmt.Errorf("%w: consistent point: %w", ErrProtocol, err)
	}
	if row[2] == nil {
		return s, fmt.Errorf("%w: no snapshot was exported", ErrProtocol)
	}
	s.ConsistentLSN, s.Name = lsn, string(row[2])
	return s, nil
}

// serverMajor returns the server's major version (e.g. 15), or 0 if unknown.
func serverMajor(c *pgconn.PgConn) int {
	v := c.ParameterStatus("server_version")
	major, _, _ := strings.Cut(v, ".")
	n, _ := strconv.Atoi(strings.TrimFunc(major, func(r rune) bool { return r < '0' || r > '9' }))
	return n
}
