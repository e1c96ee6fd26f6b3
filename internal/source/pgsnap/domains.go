package pgsnap

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Domains resolves domain types to their base types (it implements
// bronze.TypeResolver). PostgreSQL announces a domain column with the
// domain's OID, in pgoutput's Relation message as in pg_attribute; Bronze
// stores it by its base type's rule. The map is loaded from pg_type and
// reloaded, at most once per second, when an unknown user type is asked
// for (a domain created after the load).
type Domains struct {
	dsn, password string

	mu     sync.Mutex
	m      map[uint32]domain
	loaded time.Time
}

type domain struct {
	base   uint32
	typmod int32
}

// NewDomains returns a resolver reading pg_type through dsn.
func NewDomains(dsn, password string) *Domains {
	return &Domains{dsn: dsn, password: password}
}

// Load reads every domain of the database.
func (d *Domains) Load(ctx context.Context) error {
	cfg, err := pgx.ParseConfig(d.dsn)
	if err != nil {
		return err
	}
	if d.password != "" {
		cfg.Password = d.password
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SELECT oid, typbasetype, typtypmod FROM pg_type WHERE typtype = 'd'")
	if err != nil {
		return err
	}
	m := map[uint32]domain{}
	for rows.Next() {
		var oid uint32
		var dm domain
		if err := rows.Scan(&oid, &dm.base, &dm.typmod); err != nil {
			return err
		}
		m[oid] = dm
	}
	if err := rows.Err(); err != nil {
		return err
	}
	d.mu.Lock()
	d.m, d.loaded = m, time.Now()
	d.mu.Unlock()
	return nil
}

// BaseType returns the base type of domain oid, following domains over
// domains, and the typmod PostgreSQL applies (that of the innermost domain
// that sets one, as getBaseTypeAndTypmod does).
func (d *Domains) BaseType(oid uint32) (uint32, int32, bool) {
	d.mu.Lock()
	_, ok := d.m[oid]
	stale := !ok && time.Since(d.loaded) > time.Second
	d.mu.Unlock()
	if stale {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = d.Load(ctx) // on failure the type stays unresolved: stored as text
		cancel()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dm, ok := d.m[oid]
	if !ok {
		return 0, 0, false
	}
	base, typmod := dm.base, dm.typmod
	for i := 0; i < 32; i++ { // domains over domains; bounded against cycles
		next, ok := d.m[base]
		if !ok {
			break
		}
		base = next.base
		if next.typmod >= 0 {
			typmod = next.typmod
		}
	}
	return base, typmod, true
}
