package kinesis

import (
	"context"
	"errors"

	"github.com/aws/smithy-go"
)

// Error codes Kinesis returns, per request or per PutRecords entry.
const (
	codeThroughput = "ProvisionedThroughputExceededException"
	codeInternal   = "InternalFailure"
	codeExpiredIt  = "ExpiredIteratorException"
	codeNotFound   = "ResourceNotFoundException"
	codeInUse      = "ResourceInUseException"
)

// retryableCode decides, in one place, which Kinesis error codes are worth
// retrying:
//   - throughput and rate errors clear once load drops: back off and retry;
//   - InternalFailure and 5xx-style codes are transient on the service side;
//   - KMS throttling is a rate limit of the key, not of the stream;
//   - everything else (not found, access denied, validation, KMS key
//     disabled or missing) needs a human: fail.
func retryableCode(code string) bool {
	switch code {
	case codeThroughput, "LimitExceededException", "ThrottlingException", "KMSThrottlingException",
		codeInternal, "InternalFailureException", "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException",
		"RequestTimeout", "RequestTimeoutException":
		return true
	}
	return false
}

// retryable classifies an error from an API call. API errors go by code;
// other errors (connection reset, timeout) are transport failures and
// worth retrying, unless our own context ended.
func retryable(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return retryableCode(ae.ErrorCode())
	}
	// The SDK refused to send the request: sending it again cannot help.
	var invalid *smithy.InvalidParamsError
	if errors.As(err, &invalid) {
		return false
	}
	return true
}

// errorCode returns the API error code of err, or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
