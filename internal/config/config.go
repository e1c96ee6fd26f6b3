// Package config is silt's configuration: one struct per stage, defaults, and
// a Validate that reports every problem at once. It is the only package that
// reads configuration files and the environment.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
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
	Gold   []GoldConfig `yaml:"gold"`
	Status StatusConfig `yaml:"status"`
	Log    LogConfig    `yaml:"log"`
	// MemoryLimit is the soft limit of the process's memory (the Go
	// runtime's, like a JVM heap limit): the garbage collector works to stay
	// under it. Default: 90% of the container's (cgroup) memory limit, none
	// outside a container; the GOMEMLIMIT environment variable wins.
	MemoryLimit ByteSize `yaml:"memory_limit"`
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
	// Snapshot is "initial" (default: when silt creates the slot, copy every
	// published table in the slot's exported snapshot, then stream) or
	// "never" (stream changes only).
	Snapshot string `yaml:"snapshot"`
	// SnapshotTablesParallel is how many tables are copied at once (DMS
	// MaxFullLoadSubTasks). Default 2.
	SnapshotTablesParallel int `yaml:"snapshot_tables_parallel"`
	// SnapshotChunksPerTable is how many chunks (heap block ranges) of one
	// table are copied at once (DMS ParallelLoadThreads). Default 4. The
	// snapshot holds tables_parallel × chunks_per_table connections.
	SnapshotChunksPerTable int `yaml:"snapshot_chunks_per_table"`
	// SnapshotChunkRows is the target rows per chunk: the unit of
	// parallelism within a table and of resumption after a crash.
	// Default 100000.
	SnapshotChunkRows int64 `yaml:"snapshot_chunk_rows"`
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
	// ReceiveTimeout: a replication connection silent this long is dropped
	// and reconnected (a stalled network). Default 60s (PostgreSQL's
	// wal_sender_timeout default); a busy server can be silent for seconds.
	ReceiveTimeout Duration `yaml:"receive_timeout"`
	// Keyless says what to do with a table that has no key (no primary key
	// and no REPLICA IDENTITY USING INDEX): "error" (default) refuses it at
	// start; "append" captures it and writes its Silver table as an
	// append-only log of its changes (see DESIGN.md, "Keyless tables").
	Keyless string `yaml:"keyless"`
	// KeylessTables overrides Keyless per table: schema.table -> error | append.
	KeylessTables map[string]string `yaml:"keyless_tables"`
}

// Keyless modes (source.keyless).
const (
	KeylessError  = "error"
	KeylessAppend = "append"
)

// KeylessMode returns the keyless mode of one table: its
// source.keyless_tables entry, else source.keyless.
func (s *SourceConfig) KeylessMode(id change.TableID) string {
	for name, m := range s.KeylessTables {
		if t, err := ParseTable(name); err == nil && t == id && m != "" {
			return m
		}
	}
	if s.Keyless == "" {
		return KeylessError
	}
	return s.Keyless
}

// StreamConfig is the stream between capture and Bronze.
type StreamConfig struct {
	// Kind is "local" (embedded log on disk; the default) or "kinesis"
	// (Amazon Kinesis Data Streams, see Kinesis).
	Kind string `yaml:"kind"`
	// Dir is the embedded log's directory. Default <data_dir>/stream. With
	// kind kinesis it holds the Kinesis log's position checkpoints.
	Dir string `yaml:"dir"`
	// Shards is the number of shards. Default 1. With kind kinesis it is the
	// number of logical shards silt keys its offsets by: it must stay the
	// same for the life of the lake, while the Kinesis stream itself may be
	// resharded. The embedded log keeps it too; "silt stream split|merge"
	// changes the physical shards under it.
	Shards int `yaml:"shards"`
	// Durability is "fsync" (group-commit fsync before a write is
	// acknowledged; default) or "none" (OS buffered; tests and demos).
	// Embedded log only.
	Durability string `yaml:"durability"`
	// PartitionKey is the partition key strategy: "primary-key" (default;
	// keeps per-key order), "columns" (PartitionKeyColumns), "schema-table",
	// "transaction-id", "constant", "random".
	PartitionKey string `yaml:"partition_key"`
	// PartitionKeyColumns are the columns of the "columns" strategy, e.g.
	// [tag_id, ts]. A table without them is keyed by primary key.
	PartitionKeyColumns []string `yaml:"partition_key_columns"`
	// Format is the record format: "compact" (silt's binary change record;
	// default) or "dms" (the JSON envelope AWS DMS writes to Kinesis, so
	// existing DMS consumers keep working).
	Format string `yaml:"format"`
	// Limits optionally makes the embedded log enforce Kinesis per-shard
	// limits, to try a shard count locally.
	Limits ShardLimits `yaml:"limits"`
	// Kinesis configures kind kinesis.
	Kinesis KinesisConfig `yaml:"kinesis"`
}

// ShardLimits are per-shard throughput limits of the embedded log. With
// Enforce, an append over the write limit waits (back-pressure) and counts
// as throttled; a read over the read limit waits.
type ShardLimits struct {
	// Enforce turns the limits on. Default false.
	Enforce bool `yaml:"enforce"`
	// WriteBytesPerSec per shard. Default 1MB (Kinesis).
	WriteBytesPerSec ByteSize `yaml:"write_bytes_per_sec"`
	// WriteRecordsPerSec per shard. Default 1000 (Kinesis).
	WriteRecordsPerSec int `yaml:"write_records_per_sec"`
	// ReadBytesPerSec per shard. Default 2MB (Kinesis).
	ReadBytesPerSec ByteSize `yaml:"read_bytes_per_sec"`
}

// KinesisConfig is Amazon Kinesis Data Streams.
type KinesisConfig struct {
	// StreamName is the Kinesis data stream.
	StreamName string `yaml:"stream_name"`
	// Region is the AWS region; empty uses the SDK's usual lookup
	// (AWS_REGION, shared config).
	Region string `yaml:"region"`
	// Endpoint overrides the service endpoint (kinesalite, LocalStack, VPC
	// endpoints), e.g. http://127.0.0.1:4567.
	Endpoint string `yaml:"endpoint"`
	// Create creates the stream with stream.shards shards when it does not
	// exist. Default false.
	Create bool `yaml:"create"`
}

// LakeConfig says where Bronze and Silver live: a local directory or an
// S3 bucket and prefix. Credentials are never part of it: S3 uses the
// default AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
// web identity, container or instance role). See lake.go.
type LakeConfig struct {
	// Path is a local directory or s3://bucket/prefix. Default <data_dir>/lake.
	Path string `yaml:"path"`
	// Region of the bucket. Default: AWS_REGION or the profile's region;
	// "us-east-1" when Endpoint is set.
	Region string `yaml:"region"`
	// Endpoint of an S3-compatible store (http(s)://host:port). Default: AWS.
	Endpoint string `yaml:"endpoint"`
	// PathStyle addresses buckets as endpoint/bucket/key (most S3-compatible
	// stores need it). Default false.
	PathStyle bool `yaml:"path_style"`
	// Profile of the shared AWS config files. Default: AWS_PROFILE or "default".
	Profile string `yaml:"profile"`
	// SSE is server-side encryption of new objects: "" (the bucket's
	// default), "sse-s3" or "sse-kms".
	SSE string `yaml:"sse"`
	// KMSKeyID is the KMS key (id, ARN or alias) for sse-kms. Default: the
	// account's aws/s3 key.
	KMSKeyID string `yaml:"kms_key_id"`
	// PartSize of multipart uploads; larger objects are uploaded in parts.
	// Default 16MiB (5MiB to 5GiB).
	PartSize ByteSize `yaml:"part_size"`
	// UploadConcurrency bounds the parts of one upload in flight. Default 4.
	UploadConcurrency int `yaml:"upload_concurrency"`
	// MaxAttempts per S3 request (5xx, throttling, timeouts are retried with
	// backoff). Default 8.
	MaxAttempts int `yaml:"max_attempts"`
	// RequestTimeout bounds one attempt of one S3 request. Default 2m.
	RequestTimeout Duration `yaml:"request_timeout"`
}

// BronzeConfig tunes the Bronze writer (Firehose-like buffering).
type BronzeConfig struct {
	// FlushInterval: buffered changes are written at least this often. Default 1s.
	FlushInterval Duration `yaml:"flush_interval"`
	// FlushBytes: a flush starts early when this much is buffered. Default 64 MiB.
	FlushBytes ByteSize `yaml:"flush_bytes"`
	// TargetFileSize for Parquet files. Default 128 MiB.
	TargetFileSize ByteSize `yaml:"target_file_size"`
	// PartitionBy is the commit-time partition granularity of new Bronze
	// tables: hour (year/month/day/hour; default), day, month or none.
	PartitionBy string `yaml:"partition_by"`
	// SnapshotZstdLevel is the zstd level (1 fastest .. 22) of the Parquet
	// files the initial snapshot writes. Default 1.
	SnapshotZstdLevel int `yaml:"snapshot_zstd_level"`
}

// SilverConfig tunes the Silver processor.
type SilverConfig struct {
	// Interval is the micro-batch trigger interval. Default 2s.
	Interval Duration `yaml:"interval"`
	// OptimizeEvery: small files of a Silver table are compacted
	// (OPTIMIZE, bin-packing) after every N-th Silver commit. Default 10;
	// -1 turns automatic OPTIMIZE off.
	OptimizeEvery int `yaml:"optimize_every"`
	// TargetFileSize of Silver data files, for MERGE and OPTIMIZE. Default
	// 128 MiB.
	TargetFileSize ByteSize `yaml:"target_file_size"`
	// Tables: per-table partitioning and enrichment, keyed by schema.table.
	Tables map[string]SilverTableConfig `yaml:"tables"`
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
	if s.Snapshot == "" {
		s.Snapshot = "initial"
	}
	if s.SnapshotTablesParallel == 0 {
		s.SnapshotTablesParallel = 2
	}
	if s.SnapshotChunksPerTable == 0 {
		s.SnapshotChunksPerTable = 4
	}
	if s.SnapshotChunkRows == 0 {
		s.SnapshotChunkRows = 100000
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
	if s.ReceiveTimeout.Duration == 0 {
		s.ReceiveTimeout.Duration = 60 * time.Second
	}
	if s.Keyless == "" {
		s.Keyless = KeylessError
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
	if st.Format == "" {
		st.Format = "compact"
	}
	if st.Limits.Enforce {
		if st.Limits.WriteBytesPerSec == 0 {
			st.Limits.WriteBytesPerSec = 1000 * 1000
		}
		if st.Limits.WriteRecordsPerSec == 0 {
			st.Limits.WriteRecordsPerSec = 1000
		}
		if st.Limits.ReadBytesPerSec == 0 {
			st.Limits.ReadBytesPerSec = 2 * 1000 * 1000
		}
	}
	c.Lake.setDefaults(dataDir)
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
	if c.Silver.OptimizeEvery == 0 {
		c.Silver.OptimizeEvery = 10
	}
	if c.Silver.TargetFileSize == 0 {
		c.Silver.TargetFileSize = 128 << 20
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Status.Listen == "" {
		c.Status.Listen = "127.0.0.1:9187"
	}
	for i := range c.Gold {
		c.Gold[i].setDefaults()
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
	switch c.Source.Snapshot {
	case "initial", "never":
	default:
		add("source.snapshot %q is not one of initial, never", c.Source.Snapshot)
	}
	if n := c.Source.SnapshotTablesParallel; n < 1 || n > 64 {
		add("source.snapshot_tables_parallel %d is out of range: use 1 to 64", n)
	}
	if n := c.Source.SnapshotChunksPerTable; n < 1 || n > 64 {
		add("source.snapshot_chunks_per_table %d is out of range: use 1 to 64", n)
	}
	if n := c.Source.SnapshotTablesParallel * c.Source.SnapshotChunksPerTable; n > 256 {
		add("source.snapshot_tables_parallel × snapshot_chunks_per_table is %d connections: use at most 256", n)
	}
	if c.Source.SnapshotChunkRows < 1000 {
		add("source.snapshot_chunk_rows %d is too small: use at least 1000", c.Source.SnapshotChunkRows)
	}
	if c.Source.StatusInterval.Duration < 100*time.Millisecond {
		add("source.status_interval %s is too short: use at least 100ms", c.Source.StatusInterval)
	}
	if c.Source.TxnMemoryLimit < 1<<20 {
		add("source.txn_memory_limit %d is too small: use at least 1MiB", c.Source.TxnMemoryLimit)
	}
	if c.Source.ReceiveTimeout.Duration < 100*time.Millisecond {
		add("source.receive_timeout %s is too short: use at least 100ms (default 60s)", c.Source.ReceiveTimeout)
	}
	if hb := c.Source.HeartbeatInterval.Duration; hb >= 0 && hb < 100*time.Millisecond {
		add("source.heartbeat_interval %s is too short: use at least 100ms (or a negative value to disable)", c.Source.HeartbeatInterval)
	}
	switch c.Source.Keyless {
	case KeylessError, KeylessAppend, "":
	default:
		add("source.keyless %q is not one of error, append", c.Source.Keyless)
	}
	for _, name := range slices.Sorted(maps.Keys(c.Source.KeylessTables)) {
		if _, err := ParseTable(name); err != nil {
			add("source.keyless_tables.%s: %v", name, err)
		}
		switch m := c.Source.KeylessTables[name]; m {
		case KeylessError, KeylessAppend:
		default:
			add("source.keyless_tables.%s %q is not one of error, append", name, m)
		}
	}
	switch c.Stream.Kind {
	case "local", "kinesis":
	default:
		add("stream.kind %q is not supported: use \"local\" or \"kinesis\"", c.Stream.Kind)
	}
	if c.Stream.Dir == "" {
		add("stream.dir is empty: set a directory for the embedded log (with kind kinesis: for its position checkpoints)")
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
	case "primary-key", "columns", "schema-table", "transaction-id", "constant", "random":
		if c.Stream.PartitionKey == "columns" && len(c.Stream.PartitionKeyColumns) == 0 {
			add("stream.partition_key columns needs stream.partition_key_columns, e.g. [tag_id, ts]")
		}
		if c.Stream.PartitionKey != "columns" && len(c.Stream.PartitionKeyColumns) > 0 {
			add("stream.partition_key_columns is set but stream.partition_key is %q: set it to columns", c.Stream.PartitionKey)
		}
	default:
		add("stream.partition_key %q is not one of primary-key, columns, schema-table, transaction-id, constant, random", c.Stream.PartitionKey)
	}
	seenCol := map[string]bool{}
	for _, col := range c.Stream.PartitionKeyColumns {
		if col == "" || len(col) > 63 || strings.ContainsRune(col, 0) {
			add("stream.partition_key_columns: %q is not a column name", col)
		} else if seenCol[col] {
			add("stream.partition_key_columns: %q is listed twice", col)
		}
		seenCol[col] = true
	}
	switch c.Stream.Format {
	case "compact", "dms":
	default:
		add("stream.format %q is not one of compact, dms", c.Stream.Format)
	}
	if l := c.Stream.Limits; l.Enforce {
		if l.WriteBytesPerSec < 1<<10 {
			add("stream.limits.write_bytes_per_sec %d is too small: use at least 1KiB (Kinesis: 1MB)", l.WriteBytesPerSec)
		}
		if l.WriteRecordsPerSec < 1 {
			add("stream.limits.write_records_per_sec %d must be positive (Kinesis: 1000)", l.WriteRecordsPerSec)
		}
		if l.ReadBytesPerSec < 1<<10 {
			add("stream.limits.read_bytes_per_sec %d is too small: use at least 1KiB (Kinesis: 2MB)", l.ReadBytesPerSec)
		}
		if c.Stream.Kind == "kinesis" {
			add("stream.limits applies to the embedded log only: Kinesis enforces its own limits")
		}
	}
	if c.Stream.Kind == "kinesis" {
		k := c.Stream.Kinesis
		if !validStreamName(k.StreamName) {
			add("stream.kinesis.stream_name %q must be 1 to 128 letters, digits, '_', '-' or '.'", k.StreamName)
		}
		if k.Endpoint != "" && !strings.HasPrefix(k.Endpoint, "http://") && !strings.HasPrefix(k.Endpoint, "https://") {
			add("stream.kinesis.endpoint %q must be an http:// or https:// URL", k.Endpoint)
		}
	}
	c.Lake.validate(add)
	if c.MemoryLimit != 0 && c.MemoryLimit < 64<<20 {
		add("memory_limit %d is too small: use at least 64MiB (or leave it out: 90%% of the container's limit)", c.MemoryLimit)
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
	if c.Silver.OptimizeEvery < -1 {
		add("silver.optimize_every %d is invalid: use a number of commits, or -1 to turn automatic OPTIMIZE off", c.Silver.OptimizeEvery)
	}
	if c.Silver.TargetFileSize < 1<<10 {
		add("silver.target_file_size %d is too small: use at least 1KiB", c.Silver.TargetFileSize)
	}
	switch c.Bronze.PartitionBy {
	case "", "hour", "day", "month", "none":
	default:
		add("bronze.partition_by %q is not one of hour, day, month, none", c.Bronze.PartitionBy)
	}
	if c.Bronze.SnapshotZstdLevel < 0 || c.Bronze.SnapshotZstdLevel > 22 {
		add("bronze.snapshot_zstd_level %d is not a zstd level: use 1 (fastest) to 22, or leave it out for 1", c.Bronze.SnapshotZstdLevel)
	}
	c.Silver.validateTables(add)
	seenGold := map[string]bool{}
	for i := range c.Gold {
		c.Gold[i].validate(i, add)
		if seenGold[c.Gold[i].Name] {
			add("gold[%d].name %q is used twice", i, c.Gold[i].Name)
		}
		seenGold[c.Gold[i].Name] = true
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

func validStreamName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
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
