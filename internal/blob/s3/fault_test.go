package s3_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/blob/faulty"
	"github.com/silt-dev/silt/internal/blob/s3"
	"github.com/silt-dev/silt/internal/blob/s3/s3test"
)

// servers runs fn against gofakes3 and versitygw (the latter required in CI).
func servers(t *testing.T, fn func(t *testing.T, srv *s3test.Server)) {
	t.Run("gofakes3", func(t *testing.T) { fn(t, s3test.Gofakes3(t)) })
	t.Run("versitygw", func(t *testing.T) { fn(t, s3test.VersityGW(t)) })
}

// faultyStore returns a store whose requests pass through a fault
// transport, and the transport.
func faultyStore(t *testing.T, srv *s3test.Server, tweak func(*s3.Options)) (*s3.Store, *faulty.Transport) {
	t.Helper()
	tr := &faulty.Transport{Base: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(tr.Base.(*http.Transport).CloseIdleConnections)
	o := testOptions(srv, freshPrefix())
	o.HTTPClient = &http.Client{Transport: tr}
	o.MaxAttempts = 5
	o.RequestTimeout = 2 * time.Second
	if tweak != nil {
		tweak(&o)
	}
	return newStore(t, srv, o), tr
}

func bg(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestRetries(t *testing.T) {
	servers(t, func(t *testing.T, srv *s3test.Server) {
		cases := []struct {
			name string
			rule faulty.Rule
			op   func(ctx context.Context, s *s3.Store) error
		}{
			{"SlowDownOnPut", faulty.Rule{Method: "PUT", Kind: faulty.Status, Status: 503, Code: "SlowDown", Times: 3},
				func(ctx context.Context, s *s3.Store) error { return s.Put(ctx, "k", []byte("v")) }},
			{"429OnPutIfAbsent", faulty.Rule{Method: "PUT", Kind: faulty.Status, Status: 429, Code: "TooManyRequests", Times: 2},
				func(ctx context.Context, s *s3.Store) error { return s.PutIfAbsent(ctx, "k2", []byte("v")) }},
			{"500OnGet", faulty.Rule{Method: "GET", Path: "/k", Kind: faulty.Status, Status: 500, Code: "InternalError", Times: 2},
				func(ctx context.Context, s *s3.Store) error { _, err := s.Get(ctx, "k"); return err }},
			{"503OnList", faulty.Rule{Method: "GET", Query: "list-type", Kind: faulty.Status, Status: 503, Code: "ServiceUnavailable", Times: 2},
				func(ctx context.Context, s *s3.Store) error { _, err := s.List(ctx, ""); return err }},
			{"ResetOnDelete", faulty.Rule{Method: "DELETE", Kind: faulty.Reset, Times: 2},
				func(ctx context.Context, s *s3.Store) error { return s.Delete(ctx, "k") }},
			{"TimeoutOnRangedRead", faulty.Rule{Method: "GET", Path: "/k", Kind: faulty.Stall, Times: 1},
				func(ctx context.Context, s *s3.Store) error {
					r, err := s.Open(ctx, "k")
					if err != nil {
						return err
					}
					p := make([]byte, 1)
					_, err = r.ReadAt(p, 0)
					return err
				}},
			{"TimeoutOnPart", faulty.Rule{Method: "PUT", Query: "partNumber", Kind: faulty.Stall, Times: 1},
				func(ctx context.Context, s *s3.Store) error { return s.Put(ctx, "big", make([]byte, 6<<20)) }},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				// The timeout must outlast a healthy 5 MiB part upload on a
				// loaded 2-core CI machine under -race (500 ms did not), or the
				// retries after the one stall time out too.
				s, tr := faultyStore(t, srv, func(o *s3.Options) { o.RequestTimeout = 3 * time.Second })
				if err := s.Put(bg(t), "k", []byte("v")); err != nil {
					t.Fatal(err)
				}
				tr.Add(c.rule)
				if err := c.op(bg(t), s); err != nil {
					t.Fatalf("with %d faults injected: %v", tr.Fired(), err)
				}
				if tr.Fired() == 0 || s.Stats().Retries < int64(tr.Fired()) {
					t.Fatalf("fired %d faults, %d retries", tr.Fired(), s.Stats().Retries)
				}
			})
		}
	})
}

func TestGiveUp(t *testing.T) {
	srv := s3test.Gofakes3(t)
	var retries []s3.Retry
	var mu sync.Mutex
	s, tr := faultyStore(t, srv, func(o *s3.Options) {
		o.MaxAttempts = 3
		o.OnRetry = func(r s3.Retry) { mu.Lock(); retries = append(retries, r); mu.Unlock() }
	})
	tr.Add(faulty.Rule{Method: "PUT", Kind: faulty.Status, Status: 503, Code: "SlowDown"})
	err := s.Put(bg(t), "x/y", []byte("v"))
	if err == nil {
		t.Fatal("want an error after 3 throttled attempts")
	}
	msg := err.Error()
	for _, want := range []string{"s3 put", "s3://" + srv.Bucket + "/", "x/y", "gave up after 3 attempts", "SlowDown"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if len(retries) != 2 || retries[0].Class != "retry-rejected" {
		t.Errorf("OnRetry calls = %+v, want 2 retry-rejected", retries)
	}
	// Fatal answers are not retried.
	tr.Clear()
	tr.Add(faulty.Rule{Method: "PUT", Kind: faulty.Status, Status: 400, Code: "InvalidArgument"})
	before := tr.Requests()
	if err := s.Put(bg(t), "x/z", []byte("v")); err == nil || tr.Requests()-before != 1 {
		t.Fatalf("400: err %v after %d requests, want an error after 1", err, tr.Requests()-before)
	}
	// A cancelled context stops the loop.
	tr.Clear()
	tr.Add(faulty.Rule{Method: "PUT", Kind: faulty.Status, Status: 503, Code: "SlowDown"})
	ctx, cancel := context.WithCancel(context.Background())
	s2, tr2 := faultyStore(t, srv, func(o *s3.Options) {
		o.MaxAttempts, o.MinBackoff, o.MaxBackoff = 100, time.Hour, time.Hour
		o.OnRetry = func(s3.Retry) { cancel() }
	})
	tr2.Add(faulty.Rule{Method: "PUT", Kind: faulty.Status, Status: 503, Code: "SlowDown"})
	if err := s2.Put(ctx, "x/w", []byte("v")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled during backoff: %v", err)
	}
}

// TestLostReply: the conditional PUT succeeds on the server, the reply is
// lost; the retry gets 412 and the store recognises its own bytes.
func TestLostReply(t *testing.T) {
	servers(t, func(t *testing.T, srv *s3test.Server) {
		for _, kind := range []faulty.Kind{faulty.LoseReply, faulty.StatusAfter} {
			s, tr := faultyStore(t, srv, nil)
			tr.Add(faulty.Rule{Method: "PUT", Header: "If-None-Match", Kind: kind, Status: 500, Code: "InternalError", Times: 1})
			if err := s.PutIfAbsent(bg(t), "_delta_log/00000000000000000001.json", []byte("ours")); err != nil {
				t.Fatalf("kind %d: PutIfAbsent after a lost reply: %v", kind, err)
			}
			if s.Stats().AmbiguousWins != 1 || tr.Fired() != 1 {
				t.Fatalf("kind %d: ambiguous wins %d, faults %d", kind, s.Stats().AmbiguousWins, tr.Fired())
			}
			// Now someone else's object is there: our unknown attempt followed
			// by 412 must be ErrExists, not a false success.
			tr.Add(faulty.Rule{Method: "PUT", Header: "If-None-Match", Kind: faulty.Status, Status: 500, Code: "InternalError", Times: 1})
			err := s.PutIfAbsent(bg(t), "_delta_log/00000000000000000001.json", []byte("theirs"))
			if !errors.Is(err, blob.ErrExists) {
				t.Fatalf("kind %d: got %v, want ErrExists", kind, err)
			}
			got, err := s.Get(bg(t), "_delta_log/00000000000000000001.json")
			if err != nil || string(got) != "ours" {
				t.Fatalf("object = %q, %v", got, err)
			}
		}
	})
}

// TestLostReplyMultipart: CompleteMultipartUpload takes effect but its
// reply is lost; the retry finds the upload gone (or 412) and the object
// equal to ours.
func TestLostReplyMultipart(t *testing.T) {
	srv := s3test.VersityGW(t)
	for _, ifAbsent := range []bool{false, true} {
		s, tr := faultyStore(t, srv, nil)
		tr.Add(faulty.Rule{Method: "POST", Query: "uploadId", Kind: faulty.LoseReply, Times: 1})
		data := bytes.Repeat([]byte("0123456789abcdef"), (11<<20)/16)
		put := s.Put
		if ifAbsent {
			put = s.PutIfAbsent
		}
		if err := put(bg(t), "big.parquet", data); err != nil {
			t.Fatalf("ifAbsent=%v: %v", ifAbsent, err)
		}
		got, err := s.Get(bg(t), "big.parquet")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("ifAbsent=%v: read back %d bytes, %v", ifAbsent, len(got), err)
		}
		if tr.Fired() != 1 {
			t.Fatalf("fired %d", tr.Fired())
		}
	}
}

// TestRaceWithFaults: 16 writers race on one key while replies are lost and
// requests throttled: still exactly one winner.
func TestRaceWithFaults(t *testing.T) {
	servers(t, func(t *testing.T, srv *s3test.Server) {
		s, tr := faultyStore(t, srv, func(o *s3.Options) { o.MaxAttempts = 10 })
		tr.Add(faulty.Rule{Method: "PUT", Header: "If-None-Match", Kind: faulty.LoseReply, Times: 3})
		tr.Add(faulty.Rule{Method: "PUT", Header: "If-None-Match", Kind: faulty.Status, Status: 503, Code: "SlowDown", Times: 5})
		errs := make([]error, 16)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range errs {
			wg.Go(func() {
				<-start
				errs[w] = s.PutIfAbsent(bg(t), "race", []byte{byte('a' + w)})
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for w, err := range errs {
			if err == nil {
				if winner >= 0 {
					t.Fatalf("writers %d and %d both won", winner, w)
				}
				winner = w
			} else if !errors.Is(err, blob.ErrExists) {
				t.Fatalf("writer %d: %v", w, err)
			}
		}
		got, err := s.Get(bg(t), "race")
		if winner < 0 || err != nil || got[0] != byte('a'+winner) {
			t.Fatalf("winner %d, object %q, %v", winner, got, err)
		}
	})
}

func TestAccessDenied(t *testing.T) {
	servers(t, func(t *testing.T, srv *s3test.Server) {
		if srv.Name == "gofakes3" {
			t.Skip("gofakes3 does not check signatures")
		}
		const secret = "wrong-secret-must-not-leak"
		o := testOptions(srv, "lake")
		o.Credentials = credentials.NewStaticCredentialsProvider(s3test.AccessKey, secret, "")
		o.MaxAttempts = 2
		_, err := s3.New(bg(t), o)
		if !errors.Is(err, s3.ErrAccessDenied) {
			t.Fatalf("wrong secret: %v, want ErrAccessDenied", err)
		}
		msg := err.Error()
		for _, want := range []string{"s3://" + srv.Bucket + "/lake", "check AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q lacks %q", msg, want)
			}
		}
		if strings.Contains(msg, secret) || strings.Contains(msg, s3test.SecretKey) {
			t.Errorf("error leaks a secret: %q", msg)
		}
	})
}

func TestMissingBucket(t *testing.T) {
	servers(t, func(t *testing.T, srv *s3test.Server) {
		o := testOptions(srv, "lake")
		o.Bucket = "no-such-bucket"
		_, err := s3.New(bg(t), o)
		if !errors.Is(err, s3.ErrNoBucket) || !strings.Contains(err.Error(), `create bucket "no-such-bucket"`) {
			t.Fatalf("missing bucket: %v", err)
		}
	})
}

func TestUnreachable(t *testing.T) {
	o := s3.Options{Bucket: "b-b-b", Endpoint: "http://127.0.0.1:1", PathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("a", "b", ""), MaxAttempts: 2, MinBackoff: time.Millisecond}
	_, err := s3.New(bg(t), o)
	if err == nil || !strings.Contains(err.Error(), "lake.endpoint") || !strings.Contains(err.Error(), "gave up after 2 attempts") {
		t.Fatalf("unreachable endpoint: %v", err)
	}
}

// recorder keeps the headers of requests.
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	reqs []*http.Request
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Clone(context.Background()))
	r.mu.Unlock()
	return r.base.RoundTrip(req)
}

func TestSSEHeaders(t *testing.T) {
	srv := s3test.Gofakes3(t)
	for _, c := range []struct{ sse, key, wantSSE, wantKey string }{
		{s3.SSES3, "", "AES256", ""},
		{s3.SSEKMS, "arn:aws:kms:us-east-1:1:key/k", "aws:kms", "arn:aws:kms:us-east-1:1:key/k"},
		{s3.SSEKMS, "", "aws:kms", ""},
		{s3.SSENone, "", "", ""},
	} {
		rec := &recorder{base: http.DefaultTransport}
		o := testOptions(srv, freshPrefix())
		o.HTTPClient = &http.Client{Transport: rec}
		o.SSE, o.KMSKeyID = c.sse, c.key
		s := newStore(t, srv, o)
		if err := s.Put(bg(t), "small", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := s.PutIfAbsent(bg(t), "large", make([]byte, 6<<20)); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range rec.reqs {
			// PutObject and CreateMultipartUpload carry SSE; parts and
			// completion must not.
			if r.Method == "PUT" && !r.URL.Query().Has("partNumber") || r.Method == "POST" && r.URL.Query().Has("uploads") {
				n++
				if got := r.Header.Get("X-Amz-Server-Side-Encryption"); got != c.wantSSE {
					t.Errorf("%s %s: SSE header %q, want %q", r.Method, r.URL, got, c.wantSSE)
				}
				if got := r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"); got != c.wantKey {
					t.Errorf("%s %s: KMS key header %q, want %q", r.Method, r.URL, got, c.wantKey)
				}
			}
		}
		if n != 2 {
			t.Errorf("sse %q: saw %d object-creating requests, want 2", c.sse, n)
		}
	}
}

// TestGofakes3MultipartIgnoresIfNoneMatch documents why the conformance
// suite skips one check on gofakes3. If this starts failing, gofakes3 got
// conditional completion: remove the skip.
func TestGofakes3MultipartIgnoresIfNoneMatch(t *testing.T) {
	srv := s3test.Gofakes3(t)
	s := newStore(t, srv, testOptions(srv, freshPrefix()))
	if err := s.Put(bg(t), "k", []byte("small")); err != nil {
		t.Fatal(err)
	}
	err := s.PutIfAbsent(bg(t), "k", make([]byte, 6<<20))
	if errors.Is(err, blob.ErrExists) {
		t.Fatal("gofakes3 now honours If-None-Match on CompleteMultipartUpload: drop SkipLargePutIfAbsentExists")
	}
}

func TestParseURL(t *testing.T) {
	for _, c := range []struct{ in, bucket, prefix string }{
		{"s3://bucket", "bucket", ""},
		{"s3://bucket/", "bucket", ""},
		{"s3://my.bucket-1/a/b/", "my.bucket-1", "a/b"},
	} {
		b, p, err := s3.ParseURL(c.in)
		if err != nil || b != c.bucket || p != c.prefix {
			t.Errorf("ParseURL(%q) = %q, %q, %v", c.in, b, p, err)
		}
	}
	for _, bad := range []string{"s3://", "s3://Bucket/x", "s3://ab", "gs://bucket", "s3://bucket/a//b", "s3://-bucket"} {
		if _, _, err := s3.ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q) accepted", bad)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	base := s3.Options{Bucket: "bucket", SkipCheck: true, Region: "eu-west-1",
		Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")}
	for name, tweak := range map[string]func(*s3.Options){
		"small part":   func(o *s3.Options) { o.PartSize = 1 << 20 },
		"bad sse":      func(o *s3.Options) { o.SSE = "rot13" },
		"kms without":  func(o *s3.Options) { o.KMSKeyID = "k" },
		"bad endpoint": func(o *s3.Options) { o.Endpoint = "localhost:9000" },
		"bad prefix":   func(o *s3.Options) { o.Prefix = "/a" },
	} {
		o := base
		tweak(&o)
		if _, err := s3.New(bg(t), o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := s3.New(bg(t), base); err != nil {
		t.Fatal(err)
	}
}
