package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/silt-dev/silt/internal/blob"
)

// ErrAccessDenied marks errors where S3 refused the credentials or the
// request (403): retrying does not help, the operator must act.
var ErrAccessDenied = errors.New("S3 access denied")

// ErrNoBucket marks a missing bucket.
var ErrNoBucket = errors.New("S3 bucket does not exist")

// ErrNotSupported marks a request the store does not implement, most often
// conditional writes (If-None-Match) on an older S3-compatible server.
var ErrNotSupported = errors.New("not supported by this S3 store")

// Error is a failed S3 operation on one object (or on a prefix for list). It
// names the object as s3://bucket/key, says what to do when the cause is
// one the operator can fix, and unwraps to the cause and, where it applies,
// to blob.ErrNotExist, blob.ErrExists, ErrAccessDenied, ErrNoBucket or
// ErrNotSupported.
type Error struct {
	Op       string // get, open, read, put, put-if-absent, list, delete, check
	URL      string // s3://bucket/key
	Attempts int    // requests sent (more than 1 after retries)
	Hint     string // what to do, or ""
	Kind     error  // one of the marker errors above, or nil
	Err      error  // the last cause
}

func (e *Error) Error() string {
	s := "s3 " + e.Op + " " + e.URL
	if e.Kind != nil {
		s += ": " + e.Kind.Error()
	}
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	if e.Attempts > 1 {
		s += fmt.Sprintf(" (gave up after %d attempts)", e.Attempts)
	}
	return s + ": " + e.Err.Error()
}

// Unwrap returns the marker and the cause, so errors.Is works for both.
func (e *Error) Unwrap() []error {
	if e.Kind != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Err}
}

// class is what the retry loop does with an error. It is decided in one
// place, classify.
type class int

const (
	// fatal: retrying cannot help (4xx, cancelled context, bad input).
	fatal class = iota
	// retryRejected: retry; the server refused the request before acting on
	// it (throttling, a concurrent conditional request).
	retryRejected
	// retryUnknown: retry; the request may or may not have taken effect
	// (5xx, timeout, connection reset, reply lost). Put-if-absent must then
	// treat a later "exists" with suspicion: it may be its own write.
	retryUnknown
)

func (c class) String() string {
	return [...]string{"fatal", "retry-rejected", "retry-unknown"}[c]
}

// httpStatus returns the HTTP status of an SDK error, or 0.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	var sre *smithyhttp.ResponseError
	if errors.As(err, &sre) {
		return sre.HTTPStatusCode()
	}
	return 0
}

// errorCode returns the S3 error code ("NoSuchKey", "SlowDown"), or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// classify decides whether a failed attempt is retried. attemptCtx is the
// attempt's own context (with the per-request timeout), parent the caller's.
func classify(parent context.Context, err error) class {
	if parent.Err() != nil {
		return fatal // the caller gave up; never retry past its context
	}
	switch errorCode(err) {
	case "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
		"TooManyRequests", "RequestThrottled", "ProvisionedThroughputExceededException":
		// Throttling is answered before the request is acted on: back off
		// and send it again.
		return retryRejected
	case "ConditionalRequestConflict":
		// 409: another conditional request on the key was in flight. AWS
		// asks clients to retry; ours did not take effect.
		return retryRejected
	case "RequestTimeout":
		// 400 RequestTimeout: the server stopped waiting for our body, so
		// nothing was stored.
		return retryRejected
	case "InternalError", "ServiceUnavailable":
		return retryUnknown
	}
	switch st := httpStatus(err); {
	case st == http.StatusTooManyRequests:
		return retryRejected
	case st >= 500:
		// A 5xx may come after the server acted (e.g. a proxy timed out
		// waiting for S3's reply).
		return retryUnknown
	case st != 0:
		return fatal // any other answer from the server is final
	}
	// No HTTP answer at all: a timeout, a reset or refused connection, a
	// truncated body. The request may have been processed.
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		return retryUnknown
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return retryUnknown
	}
	var se *smithyhttp.RequestSendError
	if errors.As(err, &se) {
		return retryUnknown
	}
	return fatal
}

// wrap turns the last error of an operation into an *Error with a marker
// and a hint.
func (s *Store) wrap(op, key string, attempts int, err error) error {
	if err == nil {
		return nil
	}
	e := &Error{Op: op, URL: s.url(key), Attempts: attempts, Err: err}
	code, st := errorCode(err), httpStatus(err)
	switch {
	case code == "NoSuchKey" || (code == "NotFound" && st == http.StatusNotFound):
		e.Kind = blob.ErrNotExist
	case code == "PreconditionFailed" || st == http.StatusPreconditionFailed:
		e.Kind = blob.ErrExists
	case code == "NoSuchBucket":
		e.Kind = ErrNoBucket
		e.Hint = fmt.Sprintf("create bucket %q or fix lake.path", s.bucket)
	case code == "AccessDenied" || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" ||
		code == "ExpiredToken" || code == "InvalidToken" || code == "TokenRefreshRequired" ||
		st == http.StatusForbidden:
		e.Kind = ErrAccessDenied
		e.Hint = fmt.Sprintf("check AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, web identity or instance role) and the policy of bucket %q", s.bucket)
	case code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed" || code == "IllegalLocationConstraintException":
		e.Hint = fmt.Sprintf("bucket %q is in another region: set lake.region (or AWS_REGION) to the bucket's region", s.bucket)
	case code == "NotImplemented" || st == http.StatusNotImplemented:
		e.Kind = ErrNotSupported
		if op == "put-if-absent" {
			e.Hint = "the store does not support conditional writes (If-None-Match: *), which silt needs for atomic Delta commits: use AWS S3 or a store that supports them"
		}
	case errors.Is(err, context.DeadlineExceeded) && attempts > 0:
		e.Hint = "requests timed out: check lake.endpoint and the network, or raise lake.request_timeout"
	}
	var se *smithyhttp.RequestSendError
	if e.Hint == "" && errors.As(err, &se) {
		e.Hint = "cannot reach the S3 endpoint: check lake.endpoint, lake.region and the network"
	}
	return e
}
