package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/change"
)

// Level grades a doctor Finding.
type Level int

const (
	LevelOK      Level = iota // nothing to do
	LevelWarn                 // works, but risky or suboptimal
	LevelProblem              // silt cannot run (or will lose the slot) until fixed
)

func (l Level) String() string {
	switch l {
	case LevelOK:
		return "ok"
	case LevelWarn:
		return "warning"
	}
	return "PROBLEM"
}

// Finding is one doctor check result.
type Finding struct {
	Check  string // short name, e.g. "wal_level"
	Level  Level
	Detail string // what was found
	Fix    string // what to do (empty when OK)
}

// Doctor checks that the source database is ready for capture with cfg
// (DSN, Password, Slot, Publication, Tables) and returns one Finding per
// check, in a fixed order. It only reads; nothing is created. An error is
// returned only when the checks cannot run at all; connection failures are
// a Finding. Messages never contain the password.
func Doctor(ctx context.Context, cfg Config) ([]Finding, error) {
	var out []Finding
	add := func(check string, l Level, detail, fix string) {
		out = append(out, Finding{Check: check, Level: l, Detail: detail, Fix: fix})
	}
	conn, err := connect(ctx, cfg.DSN, cfg.Password)
	if err != nil {
		var ce *ConnectError
		if errors.As(err, &ce) {
			add("connect", LevelProblem, ce.Error(), "check source.dsn (host, port, database, user), the password (PGPASSWORD or source.password_file) and pg_hba.conf")
			return out, nil
		}
		if errors.Is(err, ErrConfig) {
			add("connect", LevelProblem, "source.dsn cannot be parsed", "write it as postgres://user@host:5432/db?sslmode=verify-full or as key=value pairs")
			return out, nil
		}
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	add("connect", LevelOK, "connected as "+conn.Config().User+" to database "+conn.Config().Database, "")

	// TLS.
	mode := sslMode(cfg.DSN)
	var ssl bool
	var sslVersion string
	if err := conn.QueryRow(ctx, "SELECT coalesce(ssl, false), coalesce(version, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &sslVersion); err != nil {
		return nil, fmt.Errorf("read pg_stat_ssl: %w", err)
	}
	host := conn.Config().Host
	local := strings.HasPrefix(host, "/") || isLoopback(host)
	switch {
	case mode == "verify-full":
		add("tls", LevelOK, "sslmode=verify-full, "+sslVersion, "")
	case local:
		add("tls", LevelOK, fmt.Sprintf("sslmode=%s on a local connection (encrypted: %v)", mode, ssl), "")
	case !ssl:
		add("tls", LevelProblem, fmt.Sprintf("sslmode=%s and the connection to %s is not encrypted", mode, host),
			"enable ssl on the server and use sslmode=verify-full with sslrootcert=<CA file> in source.dsn")
	default:
		add("tls", LevelWarn, fmt.Sprintf("sslmode=%s: encrypted (%s) but the server certificate is not verified", mode, sslVersion),
			"use sslmode=verify-full with sslrootcert=<CA file> in source.dsn")
	}

	// wal_level.
	var walLevel string
	if err := conn.QueryRow(ctx, "SELECT current_setting('wal_level')").Scan(&walLevel); err != nil {
		return nil, fmt.Errorf("read wal_level: %w", err)
	}
	if walLevel == "logical" {
		add("wal_level", LevelOK, "logical", "")
	} else {
		add("wal_level", LevelProblem, walLevel, (&WALLevelError{Level: walLevel}).Error())
	}

	// Privileges.
	var replication, super, canCreate bool
	if err := conn.QueryRow(ctx, `SELECT rolreplication, rolsuper, has_database_privilege(current_database(), 'CREATE')
		FROM pg_roles WHERE rolname = current_user`).Scan(&replication, &super, &canCreate); err != nil {
		return nil, fmt.Errorf("read role: %w", err)
	}
	user := conn.Config().User
	if replication || super {
		add("replication privilege", LevelOK, fmt.Sprintf("role %s may replicate", user), "")
	} else {
		add("replication privilege", LevelProblem, fmt.Sprintf("role %s has neither REPLICATION nor SUPERUSER", user),
			fmt.Sprintf("ALTER ROLE %s REPLICATION (on RDS/Aurora: GRANT rds_replication TO %s)", pgx.Identifier{user}.Sanitize(), pgx.Identifier{user}.Sanitize()))
	}

	// Slots and senders.
	var maxSlots, usedSlots, maxSenders, usedSenders int
	var slotExists bool
	if err := conn.QueryRow(ctx, `SELECT current_setting('max_replication_slots')::int, (SELECT count(*) FROM pg_replication_slots)::int,
		current_setting('max_wal_senders')::int, (SELECT count(*) FROM pg_stat_replication)::int,
		EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, cfg.Slot).
		Scan(&maxSlots, &usedSlots, &maxSenders, &usedSenders, &slotExists); err != nil {
		return nil, fmt.Errorf("read replication settings: %w", err)
	}
	switch {
	case slotExists:
		add("replication slots", LevelOK, fmt.Sprintf("slot %s exists (%d of %d slots used)", cfg.Slot, usedSlots, maxSlots), "")
	case usedSlots >= maxSlots:
		add("replication slots", LevelProblem, fmt.Sprintf("all %d replication slots are used", maxSlots),
			"drop an unused slot (SELECT pg_drop_replication_slot(name)) or raise max_replication_slots and restart PostgreSQL")
	default:
		add("replication slots", LevelOK, fmt.Sprintf("%d of %d used; slot %s will be created", usedSlots, maxSlots, cfg.Slot), "")
	}
	if usedSenders >= maxSenders {
		add("wal senders", LevelProblem, fmt.Sprintf("all %d wal senders are busy", maxSenders), "raise max_wal_senders and restart PostgreSQL, or stop another replication client")
	} else {
		add("wal senders", LevelOK, fmt.Sprintf("%d of %d busy", usedSenders, maxSenders), "")
	}

	// WAL retention limit.
	var keep string
	if err := conn.QueryRow(ctx, "SELECT current_setting('max_slot_wal_keep_size')").Scan(&keep); err != nil {
		return nil, fmt.Errorf("read max_slot_wal_keep_size: %w", err)
	}
	if keep == "-1" {
		add("max_slot_wal_keep_size", LevelWarn, "unlimited: a stopped silt makes PostgreSQL keep WAL until the disk fills",
			"ALTER SYSTEM SET max_slot_wal_keep_size = '100GB'; SELECT pg_reload_conf(); (size it to hours of WAL: past it the slot is invalidated and the tables must be re-snapshotted)")
	} else {
		add("max_slot_wal_keep_size", LevelOK, keep, "")
	}
	if slotExists {
		st, err := readSlotStats(ctx, conn, cfg.Slot)
		if err != nil {
			return nil, err
		}
		detail := fmt.Sprintf("lag %s, retained WAL %s, wal_status %s", formatBytes(st.LagBytes), formatBytes(st.RetainedWALBytes), st.WALStatus)
		switch {
		case st.WALStatus == "lost":
			add("slot health", LevelProblem, detail+": the slot was invalidated and its changes are gone",
				"silt slot drop, then start silt again (the tables must be re-snapshotted)")
		case st.LagBytes > max(cfg.LagWarnBytes, DefaultLagWarnBytes):
			add("slot health", LevelWarn, detail, "start silt (or find why it does not acknowledge): the slot holds WAL until it does")
		default:
			add("slot health", LevelOK, detail, "")
		}
	}

	// Publication and tables.
	tables, err := listTables(ctx, conn)
	if err != nil {
		return nil, err
	}
	var pubAll, pubExists bool
	err = conn.QueryRow(ctx, "SELECT puballtables FROM pg_publication WHERE pubname = $1", cfg.Publication).Scan(&pubAll)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("look up publication %s: %w", cfg.Publication, err)
	default:
		pubExists = true
	}
	published := map[change.TableID]bool{}
	if pubExists {
		rows, err := conn.Query(ctx, "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1", cfg.Publication)
		if err != nil {
			return nil, fmt.Errorf("list tables of publication %s: %w", cfg.Publication, err)
		}
		for rows.Next() {
			var id change.TableID
			if err := rows.Scan(&id.Schema, &id.Name); err != nil {
				return nil, err
			}
			published[id] = true
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	want := cfg.Tables
	if len(want) == 0 {
		for id := range tables {
			want = append(want, id)
		}
	}
	slices.SortFunc(want, func(a, b change.TableID) int { return strings.Compare(a.String(), b.String()) })
	var missing, unpublished, unkeyed, appendOnly []string
	for _, id := range want {
		ti, ok := tables[id]
		switch {
		case !ok:
			missing = append(missing, id.String())
		case !ti.keyed() && cfg.KeylessAppend != nil && cfg.KeylessAppend(id):
			appendOnly = append(appendOnly, id.String())
		case !ti.keyed():
			unkeyed = append(unkeyed, id.String())
		}
		if ok && pubExists && !published[id] {
			unpublished = append(unpublished, id.String())
		}
	}
	switch {
	case !pubExists && len(cfg.Tables) == 0 && !super:
		add("publication", LevelProblem, fmt.Sprintf("publication %s does not exist, and creating it FOR ALL TABLES needs a superuser", cfg.Publication),
			fmt.Sprintf("as a superuser: CREATE PUBLICATION %s FOR ALL TABLES; or list the tables in source.tables", pgx.Identifier{cfg.Publication}.Sanitize()))
	case !pubExists && !canCreate && !super:
		add("publication", LevelProblem, fmt.Sprintf("publication %s does not exist and role %s may not create one", cfg.Publication, user),
			fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s (the role must also own the tables), or create the publication as the owner", pgx.Identifier{conn.Config().Database}.Sanitize(), pgx.Identifier{user}.Sanitize()))
	case !pubExists:
		add("publication", LevelOK, fmt.Sprintf("publication %s will be created at first run", cfg.Publication), "")
	case len(cfg.Tables) == 0 && !pubAll:
		add("publication", LevelWarn, fmt.Sprintf("publication %s lists tables but source.tables is empty: only its tables are captured", cfg.Publication),
			"list the tables in source.tables, or ALTER PUBLICATION ... ADD TABLE for the others")
	case len(unpublished) > 0:
		add("publication", LevelWarn, fmt.Sprintf("publication %s lacks %s", cfg.Publication, strings.Join(unpublished, ", ")),
			"silt adds them at start (the role must own them); or ALTER PUBLICATION "+pgx.Identifier{cfg.Publication}.Sanitize()+" ADD TABLE ...")
	default:
		add("publication", LevelOK, fmt.Sprintf("publication %s covers the %d tables", cfg.Publication, len(want)), "")
	}
	if len(missing) > 0 {
		add("tables", LevelProblem, "missing: "+strings.Join(missing, ", "), "create them, or remove them from source.tables")
	}
	switch {
	case len(unkeyed) > 0:
		fix := make([]string, len(unkeyed))
		for i, t := range unkeyed {
			fix[i] = "ALTER TABLE " + t + " ADD PRIMARY KEY (...)"
		}
		add("table keys", LevelProblem, "no primary key or replica identity index (REPLICA IDENTITY FULL alone is no key): "+strings.Join(unkeyed, ", "),
			strings.Join(fix, "; ")+", or a unique index with REPLICA IDENTITY USING INDEX; or set source.keyless: append (or source.keyless_tables.<schema.table>: append) to capture them as append-only change logs; or remove them from source.tables")
	case len(appendOnly) > 0:
		add("table keys", LevelWarn, "no key, captured append-only (source.keyless: append): "+strings.Join(appendOnly, ", "),
			"their Silver tables are change logs, not mirrors; add a primary key to mirror them (then drop their Silver tables so they are rebuilt); without REPLICA IDENTITY FULL PostgreSQL refuses UPDATE and DELETE on them")
	case len(missing) == 0:
		add("table keys", LevelOK, fmt.Sprintf("all %d tables have a key", len(want)), "")
	}
	return out, nil
}

// listTables returns every user table with its key information.
func listTables(ctx context.Context, conn *pgx.Conn) (map[change.TableID]tableInfo, error) {
	rows, err := conn.Query(ctx, tableInfoSQL)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	all := map[change.TableID]tableInfo{}
	for rows.Next() {
		var ti tableInfo
		var ident string
		if err := rows.Scan(&ti.id.Schema, &ti.id.Name, &ident, &ti.pk, &ti.hasIdent); err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		ti.exists = true
		if ident != "" {
			ti.identity = ident[0]
		}
		all[ti.id] = ti
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	return all, nil
}

var kvSSLMode = regexp.MustCompile(`(?:^|\s)sslmode\s*=\s*'?([a-z-]+)`)

// sslMode returns the DSN's sslmode (libpq's default: prefer).
func sslMode(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			if m := u.Query().Get("sslmode"); m != "" {
				return m
			}
		}
		return "prefer"
	}
	if m := kvSSLMode.FindStringSubmatch(dsn); m != nil {
		return m[1]
	}
	return "prefer"
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
