// Package config is silt's configuration: one struct per stage, defaults, and
// a Validate that reports every problem at once. It is the only package that
// reads configuration files and the environment.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/silt-dev/silt/internal/change"
)

// Config is the whole pipeline configuration (silt.yaml).
type Config struct {
	Source SourceConfig `yaml:"source"`
	Stream StreamConfig `yaml:"stream"`
	Lake   LakeConfig   `yaml:"lake"`
	Bronze BronzeConfig `yaml:"bronze"`
	Silver SilverConfig `yaml:"silver"`
	Status StatusConfig `yaml:"status"`
	Log    LogConfig    `yaml:"log"`
}

// SourceConfig is the PostgreSQL source.
type SourceConfig struct {
	// DSN is a libpq connection string or postgres:// URL. The password may be
	// left out and given by PGPASSWORD or DSNFile.
	DSN string `yaml:"dsn"`
	// DSNFile reads the DSN from a file (for secrets mounted as files).
	DSNFile string `yaml:"dsn_file"`
	// Slot is the logical replication slot (pgoutput). Default "silt".
	Slot string `yaml:"slot"`
	// Publication is created if missing. Default "silt".
	Publication string `yaml:"publication"`
	// Tables to capture as "schema.table". Empty: every table of the database
	// outside system schemas.
	Tables []string `yaml:"tables"`
	// StatusInterval is how often the standby status (the acknowledged LSN) is
	// sent to PostgreSQL. Default 10s.
	StatusInterval Duration `yaml:"status_interval"`
	// PasswordFile reads the password from a file (overrides the DSN's and
	// PGPASSWORD). The password is never logged.
	PasswordFile string `yaml:"password_file"`
	// Password is PasswordFile's content (not a YAML key: no secrets in the file).
	Password string `yaml:"-"`
	// TxnMemoryLimit is how much of one transaction capture holds in memory;
	// a larger transaction spills to <stream.dir>/spill. Default 64MiB.
	TxnMemoryLimit ByteSize `yaml:"txn_memory_limit"`
	// HeartbeatInterval: when idle, capture writes a heartbeat message this
	// often so the slot advances (retained WAL stays small). Default 30s;
	// negative (e.g. -1s) disables.
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
	// LagWarnBytes: warn when the slot's unacknowledged WAL exceeds this.
	// Default 1GiB.
	LagWarnBytes ByteSize `yaml:"lag_warn_bytes"`
}

// StreamConfig is the stream between capture and Bronze.
type StreamConfig struct {
	// Kind is "local" (embedded log on disk; the default).
	Kind string `yaml:"kind"`
	// Dir is the embedded log's directory. Default <data_dir>/stream.
	Dir string `yaml:"dir"`
	// Shards is the number of shards. Default 1.
	Shards int `yaml:"shards"`
	// Durability is "fsync" (group-commit fsync before a write is
	// acknowledged; default) or "none" (OS buffered; tests and demos).
	Durability string `yaml:"durability"`
	// PartitionKey is the partition key strategy: "primary-key" (default;
	// keeps per-key order), "schema-table", "constant".
	PartitionKey string `yaml:"partition_key"`
}

// LakeConfig says where Bronze and Silver live.
type LakeConfig struct {
	// Path is a local directory (s3:// comes later). Default <data_dir>/lake.
	Path string `yaml:"path"`
}

// BronzeConfig tunes the Bronze writer (Firehose-like buffering).
type BronzeConfig struct {
	// FlushInterval: buffered changes are written at least this often. Default 1s.
	FlushInterval Duration `yaml:"flush_interval"`
	// FlushBytes: a flush starts early when this much is buffered. Default 64 MiB.
	FlushBytes ByteSize `yaml:"flush_bytes"`
	// TargetFileSize for Parquet files. Default 128 MiB.
	TargetFileSize ByteSize `yaml:"target_file_size"`
}

// SilverConfig tunes the Silver processor.
type SilverConfig struct {
	// Interval is the micro-batch trigger interval. Default 2s.
	Interval Duration `yaml:"interval"`
}

// StatusConfig is the HTTP status endpoint.
type StatusConfig struct {
	// Listen is host:port for /status, /metrics and /healthz. Default
	// 127.0.0.1:9187; "off" disables the endpoint.
	Listen string `yaml:"listen"`
}

// LogConfig is logging.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
}

// Duration is a time.Duration that reads "1s", "500ms".
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (examples: 500ms, 2s, 1m)", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// ByteSize reads "64MiB", "1GB", "1048576".
type ByteSize int64

func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = ByteSize(v)
	return nil
}

// ParseByteSize parses sizes like 64MiB, 10MB, 512KiB, 1024.
func ParseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			mult = u.mult
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			break
		}
	}
	var n int64
	if _, err := fmt.Sscanf(t, "%d", &n); err != nil || fmt.Sprint(n) != t || n < 0 {
		return 0, fmt.Errorf("%q is not a size (examples: 64MiB, 10MB, 1048576)", s)
	}
	return n * mult, nil
}

// Default returns a configuration with every default filled in, keeping its
// data under dataDir.
func Default(dataDir string) *Config {
	c := &Config{}
	c.SetDefaults(dataDir)
	return c
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults(dataDir string) {
	if dataDir == "" {
		dataDir = "silt-data"
	}
	s := &c.Source
	if s.Slot == "" {
		s.Slot = "silt"
	}
	if s.Publication == "" {
		s.Publication = "silt"
	}
	if s.StatusInterval.Duration == 0 {
		s.StatusInterval.Duration = 10 * time.Second
	}
	if s.TxnMemoryLimit == 0 {
		s.TxnMemoryLimit = 64 << 20
	}
	if s.HeartbeatInterval.Duration == 0 {
		s.HeartbeatInterval.Duration = 30 * time.Second
	}
	if s.LagWarnBytes == 0 {
		s.LagWarnBytes = 1 << 30
	}
	st := &c.Stream
	if st.Kind == "" {
		st.Kind = "local"
	}
	if st.Dir == "" {
		st.Dir = dataDir + "/stream"
	}
	if st.Shards == 0 {
		st.Shards = 1
	}
	if st.Durability == "" {
		st.Durability = "fsync"
	}
	if st.PartitionKey == "" {
		st.PartitionKey = "primary-key"
	}
	if c.Lake.Path == "" {
		c.Lake.Path = dataDir + "/lake"
	}
	b := &c.Bronze
	if b.FlushInterval.Duration == 0 {
		b.FlushInterval.Duration = time.Second
	}
	if b.FlushBytes == 0 {
		b.FlushBytes = 64 << 20
	}
	if b.TargetFileSize == 0 {
		b.TargetFileSize = 128 << 20
	}
	if c.Silver.Interval.Duration == 0 {
		c.Silver.Interval.Duration = 2 * time.Second
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Status.Listen == "" {
		c.Status.Listen = "127.0.0.1:9187"
	}
}

// ValidationError lists every problem found by Validate.
type ValidationError struct{ Problems []string }

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid configuration: " + e.Problems[0]
	}
	return fmt.Sprintf("invalid configuration (%d problems):\n  - %s", len(e.Problems), strings.Join(e.Problems, "\n  - "))
}

// Validate checks the whole configuration and returns a *ValidationError
// listing every problem, or nil.
func (c *Config) Validate() error {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if c.Source.DSN == "" {
		add("source.dsn is empty: set it to the PostgreSQL database to capture, e.g. postgres://user@host:5432/db")
	}
	if !validIdent(c.Source.Slot) {
		add("source.slot %q must be lower-case letters, digits and underscores (a PostgreSQL slot name)", c.Source.Slot)
	}
	if !validIdent(c.Source.Publication) {
		add("source.publication %q must be lower-case letters, digits and underscores", c.Source.Publication)
	}
	for _, t := range c.Source.Tables {
		if _, err := ParseTable(t); err != nil {
			add("source.tables: %v", err)
		}
	}
	if c.Source.StatusInterval.Duration < 100*time.Millisecond {
		add("source.status_interval %s is too short: use at least 100ms", c.Source.StatusInterval)
	}
	if c.Source.TxnMemoryLimit < 1<<20 {
		add("source.txn_memory_limit %d is too small: use at least 1MiB", c.Source.TxnMemoryLimit)
	}
	if hb := c.Source.HeartbeatInterval.Duration; hb >= 0 && hb < 100*time.Millisecond {
		add("source.heartbeat_interval %s is too short: use at least 100ms (or a negative value to disable)", c.Source.HeartbeatInterval)
	}
	if c.Stream.Kind != "local" {
		add("stream.kind %q is not supported: use \"local\"", c.Stream.Kind)
	}
	if c.Stream.Dir == "" {
		add("stream.dir is empty: set a directory for the embedded log")
	}
	if c.Stream.Shards < 1 || c.Stream.Shards > 1024 {
		add("stream.shards %d is out of range: use 1 to 1024", c.Stream.Shards)
	}
	switch c.Stream.Durability {
	case "fsync", "none":
	default:
		add("stream.durability %q is not one of fsync, none", c.Stream.Durability)
	}
	switch c.Stream.PartitionKey {
	case "primary-key", "schema-table", "constant":
	default:
		add("stream.partition_key %q is not one of primary-key, schema-table, constant", c.Stream.PartitionKey)
	}
	if c.Lake.Path == "" {
		add("lake.path is empty: set a directory for Bronze and Silver")
	} else if strings.Contains(c.Lake.Path, "://") {
		add("lake.path %q: only local directories are supported so far", c.Lake.Path)
	}
	if c.Bronze.FlushInterval.Duration < 10*time.Millisecond {
		add("bronze.flush_interval %s is too short: use at least 10ms", c.Bronze.FlushInterval)
	}
	if c.Bronze.FlushBytes < 1<<10 {
		add("bronze.flush_bytes %d is too small: use at least 1KiB", c.Bronze.FlushBytes)
	}
	if c.Bronze.TargetFileSize < 1<<10 {
		add("bronze.target_file_size %d is too small: use at least 1KiB", c.Bronze.TargetFileSize)
	}
	if c.Silver.Interval.Duration < 10*time.Millisecond {
		add("silver.interval %s is too short: use at least 10ms", c.Silver.Interval)
	}
	if l := c.Status.Listen; l != "off" {
		if _, port, err := net.SplitHostPort(l); err != nil || port == "" {
			add("status.listen %q is not host:port (e.g. 127.0.0.1:9187) or \"off\"", l)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level %q is not one of debug, info, warn, error", c.Log.Level)
	}
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

func validIdent(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// ParseTable parses "schema.table" (or "table", meaning public.table).
func ParseTable(s string) (change.TableID, error) {
	schema, name, ok := strings.Cut(s, ".")
	if !ok {
		schema, name = "public", s
	}
	if schema == "" || name == "" || strings.Contains(name, ".") {
		return change.TableID{}, fmt.Errorf("%q is not a table name: write schema.table, e.g. public.readings", s)
	}
	return change.TableID{Schema: schema, Name: name}, nil
}

// Load reads a YAML file, applies defaults (data under dataDir) and resolves
// secrets from the environment: PGPASSWORD is left to the driver; SILT_SOURCE_DSN
// overrides source.dsn. Unknown keys are errors (a typo must not be ignored).
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	c, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse parses YAML config text and applies defaults and environment overrides.
func Parse(raw []byte) (*Config, error) {
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) { // io.EOF: empty file
		return nil, err
	}
	if v := os.Getenv("SILT_SOURCE_DSN"); v != "" {
		c.Source.DSN = v
	}
	if c.Source.DSN == "" && c.Source.DSNFile != "" {
		b, err := os.ReadFile(c.Source.DSNFile)
		if err != nil {
			return nil, fmt.Errorf("source.dsn_file: %w", err)
		}
		c.Source.DSN = strings.TrimSpace(string(b))
	}
	if c.Source.PasswordFile != "" {
		b, err := os.ReadFile(c.Source.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("source.password_file: %w", err)
		}
		c.Source.Password = strings.TrimRight(string(b), "\r\n")
	}
	c.SetDefaults("")
	return c, nil
}
