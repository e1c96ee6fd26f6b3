package config

import (
	"strings"
	"testing"
)

func TestStreamConfigValidate(t *testing.T) {
	base := func() *Config {
		c := Default("d")
		c.Source.DSN = "postgres://x@y/z"
		return c
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		edit func(*Config)
		want []string
	}{
		{func(c *Config) { c.Stream.Kind = "kafka" }, []string{`stream.kind "kafka"`}},
		{func(c *Config) { c.Stream.Kind = "kinesis" }, []string{"stream.kinesis.stream_name"}},
		{func(c *Config) {
			c.Stream.Kind = "kinesis"
			c.Stream.Kinesis.StreamName = "ok-name"
			c.Stream.Kinesis.Endpoint = "localhost:4567"
		}, []string{"stream.kinesis.endpoint"}},
		{func(c *Config) { c.Stream.PartitionKey = "columns" }, []string{"stream.partition_key_columns"}},
		{func(c *Config) { c.Stream.PartitionKeyColumns = []string{"a"} }, []string{"set it to columns"}},
		{func(c *Config) {
			c.Stream.PartitionKey = "columns"
			c.Stream.PartitionKeyColumns = []string{"a", "a", ""}
		}, []string{"listed twice", "not a column name"}},
		{func(c *Config) { c.Stream.Format = "avro" }, []string{"stream.format"}},
		{func(c *Config) {
			c.Stream.Limits = ShardLimits{Enforce: true, WriteBytesPerSec: 10, WriteRecordsPerSec: -1, ReadBytesPerSec: 1}
			c.Stream.Kind = "kinesis"
			c.Stream.Kinesis.StreamName = "s"
		}, []string{"write_bytes_per_sec", "write_records_per_sec", "read_bytes_per_sec", "embedded log only"}},
	}
	for i, tc := range tests {
		c := base()
		tc.edit(c)
		err := c.Validate()
		if err == nil {
			t.Errorf("case %d: no error", i)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("case %d: %v does not mention %q", i, err, w)
			}
		}
	}
}

func TestStreamConfigParse(t *testing.T) {
	c, err := Parse([]byte(`
source: {dsn: "postgres://x@y/z"}
stream:
  kind: kinesis
  shards: 8
  partition_key: columns
  partition_key_columns: [tag_id, ts]
  format: dms
  kinesis: {stream_name: cdc, region: eu-west-1, endpoint: "http://127.0.0.1:4567", create: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s := c.Stream
	if s.Kinesis.StreamName != "cdc" || !s.Kinesis.Create || s.Format != "dms" || len(s.PartitionKeyColumns) != 2 {
		t.Fatalf("parsed %+v", s)
	}
	c, err = Parse([]byte("source: {dsn: x}\nstream: {limits: {enforce: true}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Stream.Limits; l.WriteBytesPerSec != 1_000_000 || l.WriteRecordsPerSec != 1000 || l.ReadBytesPerSec != 2_000_000 {
		t.Fatalf("limit defaults %+v, want Kinesis's", l)
	}
	if c.Stream.Format != "compact" {
		t.Fatalf("format default %q", c.Stream.Format)
	}
}
