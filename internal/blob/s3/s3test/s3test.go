// Package s3test starts S3 servers for tests: gofakes3 in process and
// versitygw (a real S3 gateway over a posix directory) as a child process.
// Test-only.
//
// versitygw is found as $VERSITYGW, bin/versitygw at the repository root
// (installed by scripts/setup.sh need_versitygw), or on PATH. When it is
// missing the test is skipped, but fails when CI is set, so a green CI
// cannot hide a missing install.
package s3test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/silt-dev/silt/internal/blob/faulty"
)

// Test credentials of the servers started here (not secrets).
const (
	AccessKey = "silt-test-access"
	SecretKey = "silt-test-secret-do-not-log"
	Region    = "us-east-1"
)

// Server is a running S3 endpoint with one bucket.
type Server struct {
	Endpoint string // http://127.0.0.1:port
	Bucket   string
	Name     string // "gofakes3" or "versitygw"
}

// Credentials returns static credentials for the server.
func (s *Server) Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, "")
}

// Client returns a plain SDK client for setup and inspection.
func (s *Server) Client() *awss3.Client {
	return awss3.New(awss3.Options{
		Region: Region, BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true,
		Credentials:                s.Credentials(),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// CreateBucket creates another bucket.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("%s: create bucket %s: %v", s.Name, name, err)
	}
}

// Gofakes3 starts gofakes3 (in-memory backend) on an httptest server; it
// stops when the test ends.
func Gofakes3(t testing.TB) *Server {
	t.Helper()
	backend := s3mem.New()
	faker := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog()))
	ts := httptest.NewServer(faker.Server())
	t.Cleanup(ts.Close)
	s := &Server{Endpoint: ts.URL, Bucket: "silt-test", Name: "gofakes3"}
	if err := backend.CreateBucket(s.Bucket); err != nil {
		t.Fatal(err)
	}
	return s
}

// VersityGWPath returns the versitygw binary, or "" if there is none.
func VersityGWPath() string {
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p
	}
	if root := repoRoot(); root != "" {
		p := filepath.Join(root, "bin", "versitygw")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	return ""
}

func repoRoot() string {
	d, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		p := filepath.Dir(d)
		if p == d {
			return ""
		}
		d = p
	}
}

// RequireVersityGW skips the test when versitygw is missing, or fails it
// when CI is set.
func RequireVersityGW(t testing.TB) string {
	t.Helper()
	p := VersityGWPath()
	if p != "" {
		return p
	}
	msg := "versitygw not found (run scripts/setup.sh, which installs bin/versitygw, or set VERSITYGW)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// VersityGW starts versitygw with a posix backend in a temp directory on a
// free loopback port, waits until it answers, and creates a bucket. The
// process is stopped (SIGTERM, then SIGKILL) when the test ends.
func VersityGW(t testing.TB) *Server {
	t.Helper()
	bin := RequireVersityGW(t)
	var lastErr error
	for range 3 { // the free port may be taken between probe and bind
		s, err := startVersityGW(t, bin)
		if err == nil {
			s.CreateBucket(t, s.Bucket)
			return s
		}
		lastErr = err
	}
	t.Fatalf("versitygw did not start: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockedBuffer collects the server's output for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil // bounded: keep the first MiB
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startVersityGW(t testing.TB, bin string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "silt-versitygw-*")
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "--access", AccessKey, "--secret", SecretKey, "--region", Region,
		"--port", addr, "--quiet", "posix", dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID=", "ROOT_SECRET_ACCESS_KEY=")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}
	s := &Server{Endpoint: "http://" + addr, Bucket: "silt-test", Name: "versitygw"}
	// Ready when it answers ListBuckets.
	deadline := time.Now().Add(30 * time.Second)
	client := s.Client()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := client.ListBuckets(ctx, &awss3.ListBucketsInput{})
		cancel()
		if err == nil {
			break
		}
		select {
		case werr := <-exited:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("versitygw exited (%v): %s", werr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("versitygw on %s not ready after 30s (%v): %s", addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling for readiness, not for sync
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			if log := strings.TrimSpace(out.String()); log != "" {
				t.Logf("versitygw output:\n%s", log)
			}
		}
	})
	return s, nil
}

// FaultProxy starts a reverse proxy to target whose upstream requests go
// through tr, for tests that can only set an endpoint (the pipeline reads
// lake.endpoint from its config). The Host header is kept, so SigV4
// signatures made for the proxy's address still verify upstream. A fault
// that fails the upstream request reaches the client as 502 Bad Gateway; a
// stalled request ends when the client gives up. The proxy stops when the
// test ends.
func FaultProxy(t testing.TB, target string, tr *faulty.Transport) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Base == nil {
		base := http.DefaultTransport.(*http.Transport).Clone()
		t.Cleanup(base.CloseIdleConnections)
		tr.Base = base
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host
		},
		Transport: tr,
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	ts := httptest.NewServer(rp)
	t.Cleanup(ts.Close)
	return ts.URL
}
