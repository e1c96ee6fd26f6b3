package config

import (
	"net/url"
	"strings"
	"time"
)

// IsS3 reports whether the lake is on S3 (path s3://bucket/prefix).
func (l *LakeConfig) IsS3() bool { return strings.HasPrefix(l.Path, "s3://") }

func (l *LakeConfig) setDefaults(dataDir string) {
	if l.Path == "" {
		l.Path = dataDir + "/lake"
	}
	if l.PartSize == 0 {
		l.PartSize = 16 << 20
	}
	if l.UploadConcurrency == 0 {
		l.UploadConcurrency = 4
	}
	if l.MaxAttempts == 0 {
		l.MaxAttempts = 8
	}
	if l.RequestTimeout.Duration == 0 {
		l.RequestTimeout.Duration = 2 * time.Minute
	}
}

func (l *LakeConfig) validate(add func(string, ...any)) {
	switch {
	case l.Path == "":
		add("lake.path is empty: set a directory or s3://bucket/prefix for Bronze and Silver")
	case l.IsS3():
		bucket, prefix, _ := strings.Cut(strings.TrimPrefix(l.Path, "s3://"), "/")
		if !validBucket(bucket) {
			add("lake.path %q: bucket %q is not a valid S3 bucket name (3 to 63 lower-case letters, digits, '.' and '-')", l.Path, bucket)
		}
		if strings.Contains(prefix, "//") {
			add("lake.path %q: the prefix must not contain //", l.Path)
		}
	case strings.Contains(l.Path, "://"):
		add("lake.path %q: use a local directory or s3://bucket/prefix", l.Path)
	}
	if !l.IsS3() {
		// S3 settings on a local lake are a mistake worth reporting: the
		// operator meant one or the other.
		for _, s := range []struct {
			name string
			set  bool
		}{{"region", l.Region != ""}, {"endpoint", l.Endpoint != ""}, {"path_style", l.PathStyle},
			{"profile", l.Profile != ""}, {"sse", l.SSE != ""}, {"kms_key_id", l.KMSKeyID != ""}} {
			if s.set {
				add("lake.%s is set but lake.path %q is not an s3:// URL", s.name, l.Path)
			}
		}
	}
	if l.Endpoint != "" {
		u, err := url.Parse(l.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("lake.endpoint %q must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:7070", l.Endpoint)
		}
	}
	switch l.SSE {
	case "", "sse-s3", "sse-kms":
	default:
		add("lake.sse %q is not one of sse-s3, sse-kms (or empty for the bucket's default)", l.SSE)
	}
	if l.KMSKeyID != "" && l.SSE != "sse-kms" {
		add("lake.kms_key_id is set but lake.sse is %q: set lake.sse to sse-kms", l.SSE)
	}
	if l.PartSize < 5<<20 || l.PartSize > 5<<30 {
		add("lake.part_size %d is out of range: S3 parts are 5MiB to 5GiB", l.PartSize)
	}
	if l.UploadConcurrency < 1 || l.UploadConcurrency > 64 {
		add("lake.upload_concurrency %d is out of range: use 1 to 64", l.UploadConcurrency)
	}
	if l.MaxAttempts < 1 || l.MaxAttempts > 100 {
		add("lake.max_attempts %d is out of range: use 1 to 100", l.MaxAttempts)
	}
	if l.RequestTimeout.Duration < time.Second {
		add("lake.request_timeout %s is too short: use at least 1s", l.RequestTimeout)
	}
}

// validBucket follows S3's bucket naming rules.
func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 {
		return false
	}
	for i, r := range b {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || ((r == '.' || r == '-') && i > 0 && i < len(b)-1)) {
			return false
		}
	}
	return true
}
