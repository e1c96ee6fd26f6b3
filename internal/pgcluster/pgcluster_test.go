package pgcluster

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func start(t *testing.T, opts Options) *Cluster {
	t.Helper()
	c, err := Start(context.Background(), opts)
	if errors.Is(err, ErrNoBinaries) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func showSetting(t *testing.T, c *Cluster, name string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestStartStop(t *testing.T) {
	c := start(t, Options{})
	if got := showSetting(t, c, "wal_level"); got != "logical" {
		t.Errorf("wal_level = %q, want logical", got)
	}
	if got := showSetting(t, c, "fsync"); got != "off" {
		t.Errorf("fsync = %q, want off", got)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil { // idempotent
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("dir %s still exists after Stop: %v", c.Dir, err)
	}
	if _, err := pgx.Connect(context.Background(), c.DSN("postgres")); err == nil {
		t.Error("connect succeeded after Stop")
	}
}

func TestExtraSettingsAndKeep(t *testing.T) {
	dir := t.TempDir() + "/cluster"
	if os.Geteuid() == 0 {
		// t.TempDir's parents are 0700 root-owned; postgres could not reach them.
		d, err := os.MkdirTemp("", "pgcluster-keep-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dir = d + "/cluster"
	}
	c := start(t, Options{Dir: dir, Keep: true, ExtraSettings: map[string]string{"wal_level": "replica"}})
	if got := showSetting(t, c, "wal_level"); got != "replica" {
		t.Errorf("wal_level = %q, want replica", got)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + "/data/PG_VERSION"); err != nil {
		t.Errorf("Keep: data dir gone: %v", err)
	}
}

func TestBadSettingIncludesLog(t *testing.T) {
	if _, err := FindBinDir(); err != nil {
		t.Skip(err)
	}
	_, err := Start(context.Background(), Options{ExtraSettings: map[string]string{"no_such_setting": "1"}})
	if err == nil {
		t.Fatal("Start succeeded with a bogus setting")
	}
	if !strings.Contains(err.Error(), "no_such_setting") {
		t.Errorf("error does not include the server log: %v", err)
	}
}

func TestNoBinaries(t *testing.T) {
	_, err := Start(context.Background(), Options{BinDir: t.TempDir()})
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("err = %v, want ErrNoBinaries", err)
	}
}
