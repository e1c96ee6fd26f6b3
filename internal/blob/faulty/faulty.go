// Package faulty injects object-store faults for tests, at two levels:
//
//   - Transport is an http.RoundTripper put between an S3 client and its
//     server: it answers chosen requests with an error status (503 SlowDown,
//     500 InternalError), stalls them until the client's timeout, or
//     forwards them and then loses the reply (the request took effect, the
//     client sees a reset connection).
//   - Store wraps a blob.Store and fails chosen operations before or after
//     performing them (the "ambiguous outcome" of style.md's testing notes).
//
// Faults are rules matched in order; each fires a set number of times.
// Test-only.
package faulty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"

	"github.com/silt-dev/silt/internal/blob"
)

// ErrInjected is the error of injected faults that have no better one.
var ErrInjected = errors.New("faulty: injected fault")

// Kind is what a rule does to a matching request.
type Kind int

const (
	// Status answers with Rule.Status and an S3 XML error with Rule.Code,
	// without forwarding: the request did not take effect.
	Status Kind = iota
	// StatusAfter forwards the request, then replaces the reply with
	// Rule.Status / Rule.Code: the request took effect.
	StatusAfter
	// Stall blocks until the request's context ends (a timeout), without
	// forwarding.
	Stall
	// LoseReply forwards the request and returns a connection reset
	// instead of the reply: the request took effect, the client cannot
	// know.
	LoseReply
	// Reset returns a connection reset without forwarding.
	Reset
)

// Rule matches requests and says what to do with them.
type Rule struct {
	// Method ("PUT", "GET", ...; "" = any) and a substring of the URL path
	// ("" = any) select requests.
	Method string
	Path   string
	// Header, if set, must be present (e.g. "If-None-Match" to hit only
	// conditional writes).
	Header string
	// Query, if set, must be a query parameter present ("uploadId" for
	// multipart requests, "partNumber" for parts).
	Query string
	// Skip lets that many matching requests through before the rule fires.
	Skip int
	Kind Kind
	// Times the rule fires; 0 means every time.
	Times  int
	Status int
	Code   string
}

func (r *Rule) matches(req *http.Request) bool {
	if r.Method != "" && req.Method != r.Method {
		return false
	}
	if r.Path != "" && !strings.Contains(req.URL.Path, r.Path) {
		return false
	}
	if r.Header != "" && req.Header.Get(r.Header) == "" {
		return false
	}
	if r.Query != "" && !req.URL.Query().Has(r.Query) {
		return false
	}
	return true
}

// Transport injects faults into HTTP requests. Safe for concurrent use.
type Transport struct {
	Base http.RoundTripper // default http.DefaultTransport

	mu    sync.Mutex
	rules []*ruleState
	fired int
	seen  int
}

type ruleState struct {
	Rule
	skipped, fired int
}

// Add appends a rule.
func (t *Transport) Add(r Rule) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rules = append(t.rules, &ruleState{Rule: r})
}

// Clear removes every rule.
func (t *Transport) Clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rules = nil
}

// Fired returns how many faults were injected.
func (t *Transport) Fired() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fired
}

// Requests returns how many requests passed through.
func (t *Transport) Requests() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seen
}

func (t *Transport) pick(req *http.Request) *Rule {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen++
	for _, r := range t.rules {
		if !r.matches(req) || (r.Times > 0 && r.fired >= r.Times) {
			continue
		}
		if r.skipped < r.Skip {
			r.skipped++
			continue
		}
		r.fired++
		t.fired++
		rule := r.Rule
		return &rule
	}
	return nil
}

func (t *Transport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// errReset is what a lost reply looks like to the client.
var errReset = fmt.Errorf("faulty: read: %w", syscall.ECONNRESET)

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := t.pick(req)
	if r == nil {
		return t.base().RoundTrip(req)
	}
	switch r.Kind {
	case Status:
		drain(req)
		return errorResponse(req, r.Status, r.Code), nil
	case Stall:
		drain(req)
		<-req.Context().Done()
		return nil, req.Context().Err()
	case Reset:
		drain(req)
		return nil, errReset
	case StatusAfter, LoseReply:
		resp, err := t.base().RoundTrip(req)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if r.Kind == LoseReply {
			return nil, errReset
		}
		return errorResponse(req, r.Status, r.Code), nil
	}
	return nil, fmt.Errorf("faulty: unknown kind %d", r.Kind)
}

func drain(req *http.Request) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
}

func errorResponse(req *http.Request, status int, code string) *http.Response {
	if code == "" {
		code = http.StatusText(status)
	}
	body := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected by faulty</Message><RequestId>faulty</RequestId></Error>`, code)
	h := http.Header{}
	h.Set("Content-Type", "application/xml")
	return &http.Response{
		Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: req,
	}
}

// Op names a blob.Store method for Store rules.
type Op string

const (
	OpGet         Op = "Get"
	OpOpen        Op = "Open"
	OpPut         Op = "Put"
	OpPutIfAbsent Op = "PutIfAbsent"
	OpList        Op = "List"
	OpDelete      Op = "Delete"
)

// StoreRule fails an operation on keys containing KeyContains.
type StoreRule struct {
	Op          Op
	KeyContains string
	// After performs the operation before failing (an ambiguous outcome);
	// otherwise the operation is not performed.
	After bool
	Times int // 0 = every time
	Err   error
}

// Store wraps a blob.Store and injects StoreRule faults. Safe for
// concurrent use.
type Store struct {
	blob.Store
	mu    sync.Mutex
	rules []*storeRuleState
}

type storeRuleState struct {
	StoreRule
	fired int
}

// NewStore wraps s.
func NewStore(s blob.Store) *Store { return &Store{Store: s} }

// Add appends a rule.
func (s *Store) Add(r StoreRule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = append(s.rules, &storeRuleState{StoreRule: r})
}

func (s *Store) pick(op Op, key string) *StoreRule {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rules {
		if r.Op == op && strings.Contains(key, r.KeyContains) && (r.Times == 0 || r.fired < r.Times) {
			r.fired++
			rule := r.StoreRule
			if rule.Err == nil {
				rule.Err = ErrInjected
			}
			return &rule
		}
	}
	return nil
}

// inject runs fn under the first matching rule.
func (s *Store) inject(op Op, key string, fn func() error) error {
	r := s.pick(op, key)
	if r == nil {
		return fn()
	}
	if r.After {
		_ = fn() // whatever happened, the caller sees the fault
	}
	return fmt.Errorf("%s %s: %w", op, key, r.Err)
}

func (s *Store) Get(ctx context.Context, key string) (b []byte, err error) {
	err = s.inject(OpGet, key, func() error { b, err = s.Store.Get(ctx, key); return err })
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (s *Store) Open(ctx context.Context, key string) (r blob.Reader, err error) {
	err = s.inject(OpOpen, key, func() error { r, err = s.Store.Open(ctx, key); return err })
	if err != nil {
		if r != nil {
			r.Close()
		}
		return nil, err
	}
	return r, nil
}

func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	return s.inject(OpPut, key, func() error { return s.Store.Put(ctx, key, data) })
}

func (s *Store) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	return s.inject(OpPutIfAbsent, key, func() error { return s.Store.PutIfAbsent(ctx, key, data) })
}

func (s *Store) List(ctx context.Context, prefix string) (out []blob.Info, err error) {
	err = s.inject(OpList, prefix, func() error { out, err = s.Store.List(ctx, prefix); return err })
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Store) Delete(ctx context.Context, key string) error {
	return s.inject(OpDelete, key, func() error { return s.Store.Delete(ctx, key) })
}
