package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/silt-dev/silt/internal/change"
)

// connect opens a normal (SQL) connection, turning failures into a
// *ConnectError.
func connect(ctx context.Context, dsn, password string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: source.dsn: %w", ErrConfig, err)
	}
	if password != "" {
		cfg.Password = password
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, newConnectError(&cfg.Config, err)
	}
	return conn, nil
}

// tableInfo is what preflight learns about one table.
type tableInfo struct {
	id       change.TableID
	exists   bool
	identity byte     // pg_class.relreplident
	pk       []string // primary key columns, in key order
	hasIdent bool     // REPLICA IDENTITY USING INDEX names an existing index
}

// keyed reports whether the table's rows have a key that silt can mirror
// them by: the primary key (identity DEFAULT, or FULL with a primary key) or
// the replica identity index. REPLICA IDENTITY FULL without a primary key
// is not a key: two identical rows cannot be told apart.
func (t tableInfo) keyed() bool {
	switch t.identity {
	case 'f', 'd':
		return len(t.pk) > 0
	case 'i':
		return t.hasIdent
	}
	return false // 'n': REPLICA IDENTITY NOTHING
}

const tableInfoSQL = `
SELECT n.nspname, c.relname, c.relreplident,
       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                 FROM pg_index i
                 CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE i.indrelid = c.oid AND i.indisprimary), '{}'),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
ORDER BY 1, 2`

// preflight checks that the server and tables can be captured, and returns
// what it learnt about the tables: the configured ones, or all user tables.
// Keyless tables are refused unless keylessAppend allows them.
func preflight(ctx context.Context, conn *pgx.Conn, tables []change.TableID, keylessAppend func(change.TableID) bool) (map[change.TableID]tableInfo, error) {
	var level string
	if err := conn.QueryRow(ctx, "SELECT current_setting('wal_level')").Scan(&level); err != nil {
		return nil, fmt.Errorf("read wal_level: %w", err)
	}
	if level != "logical" {
		return nil, &WALLevelError{Level: level}
	}

	all, err := listTables(ctx, conn)
	if err != nil {
		return nil, err
	}

	want := all
	if len(tables) > 0 {
		want = make(map[change.TableID]tableInfo, len(tables))
		var missing []change.TableID
		for _, id := range tables {
			ti, ok := all[id]
			if !ok {
				missing = append(missing, id)
				continue
			}
			want[id] = ti
		}
		if len(missing) > 0 {
			return nil, &TableError{Table: missing[0], Err: ErrMissingTable, More: len(missing) - 1}
		}
	}
	var unkeyed []change.TableID
	for id, ti := range want {
		if !ti.keyed() && (keylessAppend == nil || !keylessAppend(id)) {
			unkeyed = append(unkeyed, id)
		}
	}
	if len(unkeyed) > 0 {
		slices.SortFunc(unkeyed, func(a, b change.TableID) int { return strings.Compare(a.String(), b.String()) })
		return nil, &TableError{Table: unkeyed[0], Err: ErrNoPrimaryKey, More: len(unkeyed) - 1, IdentityFull: want[unkeyed[0]].identity == 'f'}
	}
	return want, nil
}

func quoteTable(id change.TableID) string {
	return pgx.Identifier{id.Schema, id.Name}.Sanitize()
}

// ensurePublication creates the publication if missing: FOR ALL TABLES when
// no tables are configured, else FOR TABLE with the configured ones. An
// existing publication is used as it is, except that configured tables it
// lacks are added.
func ensurePublication(ctx context.Context, conn *pgx.Conn, name string, tables []change.TableID) error {
	qname := pgx.Identifier{name}.Sanitize()
	var allTables bool
	err := conn.QueryRow(ctx, "SELECT puballtables FROM pg_publication WHERE pubname = $1", name).Scan(&allTables)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		sql := "CREATE PUBLICATION " + qname + " FOR ALL TABLES"
		if len(tables) > 0 {
			list := make([]string, len(tables))
			for i, t := range tables {
				list[i] = quoteTable(t)
			}
			sql = "CREATE PUBLICATION " + qname + " FOR TABLE " + strings.Join(list, ", ")
		}
		if _, err := conn.Exec(ctx, sql); err != nil && !isDuplicate(err) {
			return fmt.Errorf("create publication %s: %w", name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("look up publication %s: %w", name, err)
	}
	if allTables || len(tables) == 0 {
		return nil
	}
	rows, err := conn.Query(ctx, "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1", name)
	if err != nil {
		return fmt.Errorf("list tables of publication %s: %w", name, err)
	}
	have := map[change.TableID]bool{}
	for rows.Next() {
		var id change.TableID
		if err := rows.Scan(&id.Schema, &id.Name); err != nil {
			return fmt.Errorf("list tables of publication %s: %w", name, err)
		}
		have[id] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list tables of publication %s: %w", name, err)
	}
	for _, t := range tables {
		if have[t] {
			continue
		}
		if _, err := conn.Exec(ctx, "ALTER PUBLICATION "+qname+" ADD TABLE "+quoteTable(t)); err != nil && !isDuplicate(err) {
			return fmt.Errorf("add %s to publication %s: %w", t, name, err)
		}
	}
	return nil
}

// ensureSlot creates the logical slot if missing, and checks an existing
// one is a pgoutput slot of this database.
func ensureSlot(ctx context.Context, conn *pgx.Conn, slot string) error {
	var plugin, database, current *string
	err := conn.QueryRow(ctx, `SELECT s.plugin, s.database, current_database()::text
		FROM pg_replication_slots s WHERE s.slot_name = $1`, slot).Scan(&plugin, &database, &current)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		_, err := conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot)
		if err != nil && !isDuplicate(err) {
			return fmt.Errorf("create replication slot %s: %w", slot, err)
		}
		if err == nil {
			return nil
		}
		return ensureSlot(ctx, conn, slot) // created concurrently: check it
	case err != nil:
		return fmt.Errorf("look up replication slot %s: %w", slot, err)
	}
	switch {
	case plugin == nil:
		return &SlotError{Slot: slot, Err: ErrSlotMismatch, Detail: "a physical slot"}
	case *plugin != "pgoutput":
		return &SlotError{Slot: slot, Err: ErrSlotMismatch, Detail: "a slot of plugin " + *plugin}
	case database == nil || current == nil || *database != *current:
		return &SlotError{Slot: slot, Err: ErrSlotMismatch, Detail: "a slot of database " + deref(database)}
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return "?"
	}
	return *s
}

// isDuplicate reports a duplicate_object error (a concurrent creator won).
func isDuplicate(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42710"
}
