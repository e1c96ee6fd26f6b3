package pgsnap

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/silt-dev/silt/internal/change"
)

// pubTablesSQL lists the publication's tables with what planning needs. Run
// inside the snapshot's transaction it sees the catalog as of the snapshot.
// pg_relation_size is not transactional: it is the heap's size now, which
// is at least its size when the snapshot was taken.
const pubTablesSQL = `
SELECT c.oid, n.nspname::text, c.relname::text, c.relfilenode,
       (pg_relation_size(c.oid) / current_setting('block_size')::bigint)::bigint,
       c.reltuples::float8, c.relpages::bigint
FROM pg_publication_tables pt
JOIN pg_namespace n ON n.nspname = pt.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
WHERE pt.pubname = $1
ORDER BY 2, 3`

type tableInfo struct {
	oid         uint32
	id          change.TableID
	relfilenode uint32
	pages       int64
	reltuples   float64
	relpages    int64
}

func listTables(ctx context.Context, conn *pgx.Conn, publication string) ([]tableInfo, error) {
	rows, err := conn.Query(ctx, pubTablesSQL, publication)
	if err != nil {
		return nil, fmt.Errorf("list tables of publication %s: %w", publication, err)
	}
	var out []tableInfo
	for rows.Next() {
		var t tableInfo
		if err := rows.Scan(&t.oid, &t.id.Schema, &t.id.Name, &t.relfilenode, &t.pages, &t.reltuples, &t.relpages); err != nil {
			return nil, fmt.Errorf("list tables of publication %s: %w", publication, err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tables of publication %s: %w", publication, err)
	}
	return out, nil
}

// rowsPerPage estimates a table's rows per heap block: from the planner's
// statistics when there are some, else by counting the rows of the first
// blocks (cheap with a TID range scan).
func rowsPerPage(ctx context.Context, conn *pgx.Conn, t tableInfo) (float64, error) {
	if t.relpages > 0 && t.reltuples > 0 {
		return t.reltuples / float64(t.relpages), nil
	}
	if t.pages == 0 {
		return 1, nil
	}
	k := min(t.pages, 64)
	var n int64
	q := "SELECT count(*) FROM " + quote(t.id) + " WHERE ctid < '(" + strconv.FormatInt(k, 10) + ",0)'::tid"
	if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
		return 0, fmt.Errorf("sample %s: %w", t.id, err)
	}
	if n == 0 {
		return 1, nil
	}
	return float64(n) / float64(k), nil
}

// relationSQL returns a table's columns as pgoutput announces them: attnum
// order, without dropped and generated columns; the type is atttypid (a
// domain stays a domain, as in pgoutput's Relation message).
const relationSQL = `
SELECT a.attname::text, a.atttypid, a.atttypmod
FROM pg_attribute a
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum`

// keysSQL returns the replica identity setting, the primary key columns
// and the replica identity index columns.
const keysSQL = `
SELECT c.relreplident::text,
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                 WHERE i.indrelid = c.oid AND i.indisprimary), '{}'),
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                 WHERE i.indrelid = c.oid AND i.indisreplident), '{}')
FROM pg_class c WHERE c.oid = $1`

// relation builds the *change.Relation of a table the way capture sees it,
// so snapshot rows and logged changes of a table share one shape: same
// columns, types and key flags (the key decides the stream shard).
//
// Key flags follow pgoutput plus pgrepl's rule for REPLICA IDENTITY FULL:
// DEFAULT marks the primary key, USING INDEX the index's columns, FULL the
// primary key if there is one (pgrepl replaces pgoutput's all-columns flags
// by it) and otherwise every column.
func relation(ctx context.Context, conn *pgx.Conn, oid uint32, id change.TableID, publication string, pg15 bool) (*change.Relation, error) {
	rows, err := conn.Query(ctx, relationSQL, oid)
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", id, err)
	}
	rel := &change.Relation{ID: oid, Table: id}
	for rows.Next() {
		var c change.Column
		if err := rows.Scan(&c.Name, &c.TypeOID, &c.TypeMod); err != nil {
			return nil, fmt.Errorf("columns of %s: %w", id, err)
		}
		rel.Columns = append(rel.Columns, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("columns of %s: %w", id, err)
	}
	if pg15 { // publication column lists
		var names []string
		err := conn.QueryRow(ctx, "SELECT coalesce(attnames::text[], '{}') FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
			publication, id.Schema, id.Name).Scan(&names)
		if err != nil {
			return nil, fmt.Errorf("publication columns of %s: %w", id, err)
		}
		if len(names) > 0 {
			rel.Columns = slices.DeleteFunc(rel.Columns, func(c change.Column) bool { return !slices.Contains(names, c.Name) })
		}
	}
	var ident string
	var pk, ri []string
	if err := conn.QueryRow(ctx, keysSQL, oid).Scan(&ident, &pk, &ri); err != nil {
		return nil, fmt.Errorf("keys of %s: %w", id, err)
	}
	var keys []string
	switch ident {
	case "d":
		keys = pk
	case "i":
		keys = ri
	case "f":
		keys = pk
		if len(keys) == 0 {
			for _, c := range rel.Columns {
				keys = append(keys, c.Name)
			}
		}
	}
	for i := range rel.Columns {
		rel.Columns[i].Key = slices.Contains(keys, rel.Columns[i].Name)
	}
	return rel, nil
}

func quote(id change.TableID) string { return pgx.Identifier{id.Schema, id.Name}.Sanitize() }
