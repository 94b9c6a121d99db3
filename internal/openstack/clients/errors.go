package clients

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/gophercloud/gophercloud/v2"
)

// Kind is what a caller should do about a cloud error.
type Kind int

const (
	// KindTerminal errors do not go away by retrying: a user must change something
	// (credentials, quota, policy, the manifest).
	KindTerminal Kind = iota
	// KindNotFound means the resource does not exist; on delete that is success.
	KindNotFound
	// KindConflict means the resource is in a state that does not allow the call yet (409); it
	// resolves itself and never deserves a condition.
	KindConflict
	// KindRetryable errors are transient: rate limits, unavailable services, connection
	// problems, timeouts. RetryAfter says when to try again if the cloud said so.
	KindRetryable
)

func (k Kind) String() string {
	switch k {
	case KindNotFound:
		return "not_found"
	case KindConflict:
		return "conflict"
	case KindRetryable:
		return "retryable"
	default:
		return "terminal"
	}
}

// Class is the classification of one error.
type Class struct {
	Kind Kind
	// StatusCode is the HTTP status of the answer, 0 when there was none.
	StatusCode int
	// RetryAfter is the cloud's Retry-After for KindRetryable, 0 when it gave none.
	RetryAfter time.Duration
}

// Classify is the single place that decides how a cloud error is handled. Everything not known
// to be transient is terminal, so that a new kind of failure surfaces in a condition instead of
// being retried silently forever.
func Classify(err error) Class {
	if err == nil {
		return Class{Kind: KindTerminal}
	}
	if code, ok := responseCode(err); ok {
		c := Class{Kind: classifyStatus(code.Actual), StatusCode: code.Actual}
		if c.Kind == KindRetryable {
			c.RetryAfter = parseRetryAfter(code.ResponseHeader.Get("Retry-After"), time.Now())
		}
		return c
	}
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return Class{Kind: KindRetryable}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE):
		return Class{Kind: KindRetryable}
	case errors.As(err, &netErr):
		return Class{Kind: KindRetryable}
	case errors.Is(err, net.ErrClosed), isUnexpectedEOF(err):
		return Class{Kind: KindRetryable}
	}
	return Class{Kind: KindTerminal}
}

// IsNotFound reports whether err says the resource does not exist.
func IsNotFound(err error) bool { return err != nil && Classify(err).Kind == KindNotFound }

// IsConflict reports whether err is a 409.
func IsConflict(err error) bool { return err != nil && Classify(err).Kind == KindConflict }

// IsRetryable reports whether err is transient.
func IsRetryable(err error) bool { return err != nil && Classify(err).Kind == KindRetryable }

// StatusCode returns the HTTP status of a cloud error, or 0.
func StatusCode(err error) int {
	if code, ok := responseCode(err); ok {
		return code.Actual
	}
	return 0
}

func classifyStatus(status int) Kind {
	switch status {
	case http.StatusNotFound:
		return KindNotFound
	case http.StatusConflict:
		return KindConflict
	case http.StatusTooManyRequests, http.StatusRequestTimeout, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusInternalServerError:
		return KindRetryable
	default:
		// 400, 401 after a failed re-authentication, 403 (policy, protected), 413 (quota).
		return KindTerminal
	}
}

// responseCode digs the HTTP answer out of gophercloud's error types; gophercloud returns it by
// value or by pointer depending on the path (and wraps it after a re-authentication).
func responseCode(err error) (gophercloud.ErrUnexpectedResponseCode, bool) {
	var v gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &v) {
		return v, true
	}
	var p *gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &p) && p != nil {
		return *p, true
	}
	var reauth *gophercloud.ErrUnableToReauthenticate
	if errors.As(err, &reauth) && reauth != nil {
		// The re-authentication itself failed: its error decides (e.g. 401 = credentials revoked).
		if c, ok := responseCode(reauth.ErrReauth); ok {
			return c, true
		}
	}
	return gophercloud.ErrUnexpectedResponseCode{}, false
}

func isUnexpectedEOF(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == "unexpected EOF" || e.Error() == "EOF" {
			return true
		}
	}
	return false
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
