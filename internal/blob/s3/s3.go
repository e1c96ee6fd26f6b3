// Package s3 implements blob.Store on Amazon S3 and S3-compatible stores
// (aws-sdk-go-v2).
//
// Mapping of the blob.Store contract:
//
//	Get          GetObject, whole body read within one attempt
//	Open         HeadObject for the size; ReadAt is a ranged GetObject
//	Put          PutObject (an S3 PUT replaces atomically), or a multipart
//	             upload above MultipartThreshold
//	PutIfAbsent  the same with If-None-Match: * (412 means blob.ErrExists);
//	             multipart uploads send it on CompleteMultipartUpload
//	List         ListObjectsV2, every page, sorted by key
//	ListFrom     the same from StartAfter (blob.ListerFrom)
//	Delete       DeleteObject (a missing key is not an error, as in S3)
//
// Retries: every request runs in a loop (retry.go) with a per-attempt
// timeout and full-jitter exponential backoff; throttling (SlowDown, 429),
// 5xx, timeouts and connection errors are retried, every other answer is
// final. The SDK's own retryer is off so the loop knows when an attempt may
// have taken effect although its reply was lost.
//
// Ambiguous put-if-absent: if an attempt's outcome is unknown (5xx, timeout,
// reset) and a retry then gets 412, the object may be our own write. The
// store reads it back: if it holds exactly the bytes we sent, PutIfAbsent
// reports success, otherwise blob.ErrExists. This is sound for silt's
// callers because every object they put-if-absent is unique to its writer
// (Delta commits carry a txnId, data files have UUID names). If the retries
// run out, the error is returned and the Delta commit loop re-reads the
// version file and looks for its txnId (internal/delta/txn.go).
//
// Credentials come from the default AWS chain only (environment, shared
// profile, web identity, container and instance metadata); silt's config
// holds no secrets, and nothing here logs credentials or request headers.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/silt-dev/silt/internal/blob"
)

// Server-side encryption modes (Options.SSE).
const (
	SSENone = ""        // the bucket's default encryption
	SSES3   = "sse-s3"  // AES256, keys managed by S3
	SSEKMS  = "sse-kms" // aws:kms, with KMSKeyID or the account's default key
)

// Limits of S3 multipart uploads.
const (
	MinPartSize = 5 << 20
	maxParts    = 10000
)

// Options configures a Store. Zero values take the defaults listed.
type Options struct {
	// Bucket and Prefix locate the lake: keys are stored as Prefix/key.
	Bucket string
	Prefix string
	// Region of the bucket. Empty: from the AWS chain (AWS_REGION, profile);
	// with a custom Endpoint, "us-east-1".
	Region string
	// Endpoint is a custom endpoint URL for S3-compatible stores
	// (http://127.0.0.1:7070). Empty: AWS.
	Endpoint string
	// PathStyle addresses buckets as endpoint/bucket/key instead of
	// bucket.endpoint/key (most S3-compatible stores need it).
	PathStyle bool
	// Profile selects a shared-config profile (else AWS_PROFILE or default).
	Profile string
	// SSE is SSENone, SSES3 or SSEKMS; KMSKeyID is the key for SSEKMS.
	SSE      string
	KMSKeyID string
	// PartSize of multipart uploads. Default 16 MiB, at least 5 MiB.
	PartSize int64
	// MultipartThreshold: objects larger than this are uploaded in parts.
	// Default 2 × PartSize.
	MultipartThreshold int64
	// Concurrency bounds the parts of one upload in flight. Default 4. The
	// memory held is the object itself: parts are slices of it.
	Concurrency int
	// MaxAttempts per request, first attempt included. Default 8.
	MaxAttempts int
	// RequestTimeout bounds one attempt of one request (one part, one ranged
	// read). Default 2m.
	RequestTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts. Defaults
	// 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// ListPageSize is MaxKeys of each ListObjectsV2 page. Default 1000.
	ListPageSize int32
	// SkipCheck skips the reachability check in New.
	SkipCheck bool

	// Credentials replaces the default chain (tests, embedding); never set
	// from configuration.
	Credentials aws.CredentialsProvider
	// HTTPClient replaces the SDK's HTTP client (tests inject faults here).
	HTTPClient *http.Client
	// OnRetry, if set, is called before each retry (metrics, logs). It must
	// not block.
	OnRetry func(Retry)
}

func (o *Options) setDefaults() {
	if o.PartSize == 0 {
		o.PartSize = 16 << 20
	}
	if o.MultipartThreshold == 0 {
		o.MultipartThreshold = 2 * o.PartSize
	}
	if o.Concurrency == 0 {
		o.Concurrency = 4
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 8
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 2 * time.Minute
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.ListPageSize == 0 {
		o.ListPageSize = 1000
	}
	if o.Endpoint != "" && o.Region == "" {
		o.Region = "us-east-1"
	}
}

func (o *Options) validate() error {
	var p []string
	if err := ValidBucket(o.Bucket); err != nil {
		p = append(p, err.Error())
	}
	if strings.HasPrefix(o.Prefix, "/") || strings.HasSuffix(o.Prefix, "/") || strings.Contains(o.Prefix, "//") {
		p = append(p, fmt.Sprintf("prefix %q must not start or end with / or contain //", o.Prefix))
	}
	if o.PartSize < MinPartSize {
		p = append(p, fmt.Sprintf("part size %d is below S3's minimum of 5 MiB", o.PartSize))
	}
	if o.MultipartThreshold < o.PartSize {
		p = append(p, fmt.Sprintf("multipart threshold %d is below the part size %d", o.MultipartThreshold, o.PartSize))
	}
	switch o.SSE {
	case SSENone, SSES3:
		if o.KMSKeyID != "" {
			p = append(p, "a KMS key id needs sse-kms")
		}
	case SSEKMS:
	default:
		p = append(p, fmt.Sprintf("sse %q is not one of sse-s3, sse-kms (or empty)", o.SSE))
	}
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p = append(p, fmt.Sprintf("endpoint %q is not an http(s) URL", o.Endpoint))
		}
	}
	if o.Concurrency < 1 || o.MaxAttempts < 1 || o.RequestTimeout <= 0 || o.ListPageSize < 1 {
		p = append(p, "concurrency, max attempts, request timeout and list page size must be positive")
	}
	if len(p) > 0 {
		return fmt.Errorf("s3 options: %s", strings.Join(p, "; "))
	}
	return nil
}

// ParseURL splits s3://bucket/prefix into bucket and prefix (no slashes at
// either end of the prefix).
func ParseURL(raw string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(raw, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an s3:// URL", raw)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	prefix = strings.Trim(prefix, "/")
	if err := ValidBucket(bucket); err != nil {
		return "", "", fmt.Errorf("%q: %w", raw, err)
	}
	if strings.Contains(prefix, "//") {
		return "", "", fmt.Errorf("%q: the prefix must not contain //", raw)
	}
	return bucket, prefix, nil
}

// ValidBucket checks S3's bucket naming rules (3 to 63 lower-case letters,
// digits, dots and hyphens, starting and ending with a letter or digit).
func ValidBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q must be 3 to 63 characters", b)
	}
	for i, r := range b {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || ((r == '.' || r == '-') && i > 0 && i < len(b)-1)
		if !ok {
			return fmt.Errorf("bucket name %q: use lower-case letters, digits, '.' and '-' (not at the ends)", b)
		}
	}
	return nil
}

// Store is a blob.Store on one bucket and prefix. Safe for concurrent use.
type Store struct {
	opts   Options
	client *awss3.Client
	bucket string
	root   string // "" or "prefix/"
	stats  struct{ retries, ambiguousWins atomic.Int64 }
}

var _ blob.Store = (*Store)(nil)

// New builds a store. Unless SkipCheck is set, it lists one key under the
// prefix so wrong credentials, region or bucket fail here with a clear
// message instead of at the first commit.
func New(ctx context.Context, o Options) (*Store, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	load := []func(*awsconfig.LoadOptions) error{
		// Our loop retries (retry.go); the SDK must not retry underneath it.
		awsconfig.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
	}
	if o.Region != "" {
		load = append(load, awsconfig.WithRegion(o.Region))
	}
	if o.Profile != "" {
		load = append(load, awsconfig.WithSharedConfigProfile(o.Profile))
	}
	if o.Credentials != nil {
		load = append(load, awsconfig.WithCredentialsProvider(o.Credentials))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("s3://%s: load AWS configuration: %w", o.Bucket, err)
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("s3://%s: no AWS region: set lake.region or AWS_REGION", o.Bucket)
	}
	client := awss3.NewFromConfig(cfg, func(so *awss3.Options) {
		so.UsePathStyle = o.PathStyle
		if o.HTTPClient != nil {
			// Set here, not with awsconfig.WithHTTPClient: a custom CA
			// bundle (AWS_CA_BUNDLE) only applies to the SDK's own client
			// type, and loading fails for any other.
			so.HTTPClient = o.HTTPClient
		}
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		// Checksums only where S3 requires them: several S3-compatible
		// stores reject the SDK's default trailing checksums. Integrity on
		// the wire comes from TLS and SigV4's payload hash.
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	s := &Store{opts: o, client: client, bucket: o.Bucket}
	if o.Prefix != "" {
		s.root = o.Prefix + "/"
	}
	if !o.SkipCheck {
		if err := s.check(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// check lists at most one key under the prefix (needs only s3:ListBucket on
// the prefix, unlike HeadBucket).
func (s *Store) check(ctx context.Context) error {
	res, err := s.do(ctx, "check", "", func(ctx context.Context) error {
		_, err := s.client.ListObjectsV2(ctx, &awss3.ListObjectsV2Input{
			Bucket: &s.bucket, Prefix: aws.String(s.root), MaxKeys: aws.Int32(1),
		})
		return err
	})
	return s.wrap("check", "", res.attempts, err)
}

// Stats counts retries and ambiguous put-if-absent outcomes resolved as our
// own write.
type Stats struct{ Retries, AmbiguousWins int64 }

// Stats returns counters since New.
func (s *Store) Stats() Stats {
	return Stats{Retries: s.stats.retries.Load(), AmbiguousWins: s.stats.ambiguousWins.Load()}
}

// URL returns s3://bucket/prefix.
func (s *Store) URL() string { return strings.TrimSuffix(s.url(""), "/") }

func (s *Store) url(key string) string { return "s3://" + s.bucket + "/" + s.root + key }

func (s *Store) objectKey(op, key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") {
		return "", &Error{Op: op, URL: s.url(key), Err: fmt.Errorf("invalid key %q", key)}
	}
	return s.root + key, nil
}

func (s *Store) sse() (types.ServerSideEncryption, *string) {
	switch s.opts.SSE {
	case SSES3:
		return types.ServerSideEncryptionAes256, nil
	case SSEKMS:
		if s.opts.KMSKeyID != "" {
			return types.ServerSideEncryptionAwsKms, aws.String(s.opts.KMSKeyID)
		}
		return types.ServerSideEncryptionAwsKms, nil
	}
	return "", nil
}

// Get returns the whole object.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	k, err := s.objectKey("get", key)
	if err != nil {
		return nil, err
	}
	var data []byte
	res, err := s.do(ctx, "get", key, func(ctx context.Context) error {
		out, err := s.client.GetObject(ctx, &awss3.GetObjectInput{Bucket: &s.bucket, Key: &k})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		var buf bytes.Buffer
		if out.ContentLength != nil && *out.ContentLength > 0 {
			buf.Grow(int(*out.ContentLength))
		}
		if _, err := buf.ReadFrom(out.Body); err != nil {
			return err // a body cut short is retried like a lost reply
		}
		if out.ContentLength != nil && int64(buf.Len()) != *out.ContentLength {
			return io.ErrUnexpectedEOF
		}
		data = buf.Bytes()
		return nil
	})
	return data, s.wrap("get", key, res.attempts, err)
}

// Open returns a ranged reader. ReadAt uses ctx, so ctx must outlive the
// reader. Objects are immutable in silt (new data gets new keys), so the
// reader does not pin the object's ETag.
func (s *Store) Open(ctx context.Context, key string) (blob.Reader, error) {
	k, err := s.objectKey("open", key)
	if err != nil {
		return nil, err
	}
	var size int64
	res, err := s.do(ctx, "open", key, func(ctx context.Context) error {
		out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &s.bucket, Key: &k})
		if err != nil {
			return err
		}
		size = aws.ToInt64(out.ContentLength)
		return nil
	})
	if err != nil {
		return nil, s.wrap("open", key, res.attempts, err)
	}
	return &reader{s: s, ctx: ctx, key: key, k: k, size: size}, nil
}

type reader struct {
	s    *Store
	ctx  context.Context
	key  string
	k    string
	size int64
}

func (r *reader) Size() int64  { return r.size }
func (r *reader) Close() error { return nil }

// ReadAt reads len(p) bytes at off with one ranged GET (retried). Like
// io.ReaderAt, it returns io.EOF with the bytes read when the range runs
// past the end.
func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("s3 read %s: negative offset %d", r.s.url(r.key), off)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := int64(len(p))
	if want == 0 {
		return 0, nil
	}
	if off+want > r.size {
		want = r.size - off
	}
	rng := fmt.Sprintf("bytes=%d-%d", off, off+want-1)
	res, err := r.s.do(r.ctx, "read", r.key, func(ctx context.Context) error {
		out, err := r.s.client.GetObject(ctx, &awss3.GetObjectInput{Bucket: &r.s.bucket, Key: &r.k, Range: &rng})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		_, err = io.ReadFull(out.Body, p[:want])
		return err
	})
	if err != nil {
		return 0, r.s.wrap("read", r.key, res.attempts, err)
	}
	if want < int64(len(p)) {
		return int(want), io.EOF
	}
	return int(want), nil
}

// Put writes the object; S3 replaces it atomically.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	return s.put(ctx, "put", key, data, false)
}

// PutIfAbsent writes the object only if the key does not exist (see the
// package doc for how an ambiguous outcome is resolved).
func (s *Store) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	return s.put(ctx, "put-if-absent", key, data, true)
}

func (s *Store) put(ctx context.Context, op, key string, data []byte, ifAbsent bool) error {
	k, err := s.objectKey(op, key)
	if err != nil {
		return err
	}
	if int64(len(data)) > s.opts.MultipartThreshold {
		return s.putMultipart(ctx, op, key, k, data, ifAbsent)
	}
	sse, kms := s.sse()
	res, err := s.do(ctx, op, key, func(ctx context.Context) error {
		in := &awss3.PutObjectInput{
			Bucket: &s.bucket, Key: &k, Body: bytes.NewReader(data),
			ContentLength: aws.Int64(int64(len(data))), ServerSideEncryption: sse, SSEKMSKeyId: kms,
		}
		if ifAbsent {
			in.IfNoneMatch = aws.String("*")
		}
		_, err := s.client.PutObject(ctx, in)
		return err
	})
	if err != nil && ifAbsent && res.unknown && isPrecondition(err) {
		return s.resolveAmbiguous(ctx, op, key, data, res, err)
	}
	return s.wrap(op, key, res.attempts, err)
}

func isPrecondition(err error) bool {
	return errorCode(err) == "PreconditionFailed" || httpStatus(err) == http.StatusPreconditionFailed
}

// resolveAmbiguous is called when put-if-absent got "exists" after an
// attempt whose outcome was unknown: the object may be ours. It is ours iff
// it holds exactly our bytes (see the package doc for why that is sound).
func (s *Store) resolveAmbiguous(ctx context.Context, op, key string, data []byte, res attemptResult, putErr error) error {
	got, err := s.Get(ctx, key)
	switch {
	case err == nil && bytes.Equal(got, data):
		s.stats.ambiguousWins.Add(1)
		return nil
	case err == nil, errors.Is(err, blob.ErrNotExist):
		// Someone else's object (or it was deleted since): not ours.
		return s.wrap(op, key, res.attempts, putErr)
	default:
		return &Error{Op: op, URL: s.url(key), Attempts: res.attempts,
			Hint: "the write may or may not have happened and reading it back failed",
			Err:  fmt.Errorf("%w (read back: %v)", putErr, err)}
	}
}

// List returns every object under prefix, sorted by key, following
// continuation tokens page by page.
func (s *Store) List(ctx context.Context, prefix string) ([]blob.Info, error) {
	return s.list(ctx, prefix, "")
}

// ListFrom implements blob.ListerFrom with ListObjectsV2's StartAfter: only
// the pages after startAfter are requested.
func (s *Store) ListFrom(ctx context.Context, prefix, startAfter string) ([]blob.Info, error) {
	return s.list(ctx, prefix, startAfter)
}

func (s *Store) list(ctx context.Context, prefix, startAfter string) ([]blob.Info, error) {
	full := s.root + prefix
	var after *string
	if startAfter != "" && startAfter >= prefix {
		after = aws.String(s.root + startAfter)
	}
	var out []blob.Info
	var token *string
	for {
		var page *awss3.ListObjectsV2Output
		res, err := s.do(ctx, "list", prefix, func(ctx context.Context) error {
			var err error
			in := &awss3.ListObjectsV2Input{
				Bucket: &s.bucket, Prefix: &full, ContinuationToken: token, MaxKeys: aws.Int32(s.opts.ListPageSize),
			}
			if token == nil {
				in.StartAfter = after // later pages continue from the token
			}
			page, err = s.client.ListObjectsV2(ctx, in)
			return err
		})
		if err != nil {
			return nil, s.wrap("list", prefix, res.attempts, err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if !strings.HasPrefix(k, full) || strings.HasSuffix(k, "/") {
				continue // folder markers made by consoles are not objects
			}
			if after != nil && k <= *after {
				continue // a store that ignores StartAfter
			}
			out = append(out, blob.Info{Key: k[len(s.root):], Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)})
		}
		if !aws.ToBool(page.IsTruncated) || aws.ToString(page.NextContinuationToken) == "" {
			break
		}
		token = page.NextContinuationToken
	}
	// S3 lists in UTF-8 byte order, as Go compares strings; some
	// S3-compatible stores do not, so sort anyway.
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete removes the object; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	k, err := s.objectKey("delete", key)
	if err != nil {
		return err
	}
	res, err := s.do(ctx, "delete", key, func(ctx context.Context) error {
		_, err := s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &s.bucket, Key: &k})
		return err
	})
	if err != nil && (errorCode(err) == "NoSuchKey" || httpStatus(err) == http.StatusNotFound) && errorCode(err) != "NoSuchBucket" {
		return nil
	}
	return s.wrap("delete", key, res.attempts, err)
}
