package config

import (
	"errors"
	"strings"
	"testing"
)

func TestLakeS3(t *testing.T) {
	c, err := Parse([]byte(`
source: {dsn: postgres://x@localhost/db}
lake:
  path: s3://my-bucket/silt/prod
  region: eu-west-1
  endpoint: http://127.0.0.1:7070
  path_style: true
  sse: sse-kms
  kms_key_id: alias/silt
  part_size: 32MiB
  request_timeout: 30s
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	l := c.Lake
	if !l.IsS3() || l.Region != "eu-west-1" || !l.PathStyle || l.PartSize != 32<<20 || l.MaxAttempts != 8 || l.UploadConcurrency != 4 {
		t.Fatalf("lake = %+v", l)
	}
}

func TestLakeValidate(t *testing.T) {
	c, err := Parse([]byte(`
source: {dsn: postgres://x@localhost/db}
lake:
  path: s3://Bad_Bucket/a//b
  endpoint: localhost:9000
  sse: aes
  kms_key_id: k
  part_size: 1MiB
  upload_concurrency: 1000
  max_attempts: -1
  request_timeout: 10ms
`))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want ValidationError, got %v", err)
	}
	for _, want := range []string{"bucket \"Bad_Bucket\"", "must not contain //", "lake.endpoint", "lake.sse", "lake.kms_key_id",
		"lake.part_size", "lake.upload_concurrency", "lake.max_attempts", "lake.request_timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no problem mentions %q:\n%v", want, err)
		}
	}
	// S3 settings on a local lake.
	c, _ = Parse([]byte("source: {dsn: x}\nlake: {path: /tmp/lake, region: us-east-1, path_style: true}\n"))
	err = c.Validate()
	if err == nil || !strings.Contains(err.Error(), "lake.region is set but lake.path") || !strings.Contains(err.Error(), "lake.path_style") {
		t.Fatalf("got %v", err)
	}
	c, _ = Parse([]byte("source: {dsn: x}\nlake: {path: 'abfs://c@a/x'}\n"))
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "use a local directory or s3://bucket/prefix") {
		t.Fatalf("got %v", err)
	}
}
