package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/silt-dev/silt/internal/change"
)

func TestExampleParsesAndValidates(t *testing.T) {
	c, err := Parse([]byte(Example))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Stream.Shards != 4 || c.Bronze.FlushBytes != 64<<20 || c.Source.Tables[0] != "public.readings" {
		t.Fatalf("example not read as written: %+v", c)
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	c, err := Parse([]byte(`
source:
  slot: Bad-Slot
  tables: [".x"]
stream:
  shards: 0
  durability: sometimes
  partition_key: random-ish
lake:
  path: gs://bucket/x
log:
  level: loud
bronze:
  snapshot_zstd_level: 23
`))
	if err != nil {
		t.Fatal(err)
	}
	c.Stream.Shards = -1
	err = c.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want ValidationError, got %v", err)
	}
	for _, want := range []string{"source.dsn", "source.slot", "source.tables", "stream.shards", "stream.durability", "stream.partition_key", "lake.path", "log.level", "bronze.snapshot_zstd_level"} {
		found := false
		for _, p := range ve.Problems {
			if strings.HasPrefix(p, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem reported for %s; got:\n%v", want, err)
		}
	}
}

func TestUnknownKeyAndBadValues(t *testing.T) {
	if _, err := Parse([]byte("sorce:\n  dsn: x\n")); err == nil || !strings.Contains(err.Error(), "sorce") {
		t.Fatalf("unknown key must be an error naming it, got %v", err)
	}
	if _, err := Parse([]byte("bronze:\n  flush_interval: soon\n")); err == nil || !strings.Contains(err.Error(), "not a duration") {
		t.Fatalf("bad duration: %v", err)
	}
	if _, err := Parse([]byte("bronze:\n  flush_bytes: lots\n")); err == nil || !strings.Contains(err.Error(), "not a size") {
		t.Fatalf("bad size: %v", err)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "64MiB": 64 << 20, "10MB": 10_000_000, "1 GiB": 1 << 30} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestEnvOverridesDSN(t *testing.T) {
	t.Setenv("SILT_SOURCE_DSN", "postgres://from-env/db")
	c, err := Parse([]byte("source:\n  dsn: postgres://from-file/db\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.DSN != "postgres://from-env/db" {
		t.Fatalf("dsn = %q", c.Source.DSN)
	}
}

func TestKeylessSetting(t *testing.T) {
	c, err := Parse([]byte("source:\n  dsn: postgres://x@h/db\n  keyless: sometimes\n  keyless_tables:\n    public.log: append\n    public.bad: maybe\n    .x: append\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want ValidationError, got %v", err)
	}
	for _, want := range []string{`source.keyless "sometimes"`, `source.keyless_tables.public.bad "maybe"`, "source.keyless_tables..x"} {
		found := false
		for _, p := range ve.Problems {
			if strings.HasPrefix(p, want) && strings.Contains(p, "error, append") == strings.Contains(want, `"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem reported for %s; got:\n%v", want, err)
		}
	}
	if len(ve.Problems) != 3 {
		t.Errorf("want 3 problems, got %d:\n%v", len(ve.Problems), err)
	}

	c, err = Parse([]byte("source:\n  dsn: postgres://x@h/db\n  keyless_tables:\n    log: append\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDefaults(t.TempDir())
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	log, other := change.TableID{Schema: "public", Name: "log"}, change.TableID{Schema: "public", Name: "t"}
	if c.Source.Keyless != KeylessError || c.Source.KeylessMode(log) != KeylessAppend || c.Source.KeylessMode(other) != KeylessError {
		t.Fatalf("keyless modes: default %q, log %q, other %q", c.Source.Keyless, c.Source.KeylessMode(log), c.Source.KeylessMode(other))
	}
	c.Source.Keyless = KeylessAppend
	c.Source.KeylessTables["log"] = KeylessError
	if c.Source.KeylessMode(log) != KeylessError || c.Source.KeylessMode(other) != KeylessAppend {
		t.Fatal("keyless_tables must override source.keyless")
	}
}
