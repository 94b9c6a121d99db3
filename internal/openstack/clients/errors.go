package clients

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gophercloud/gophercloud/v2"
)

// Kind is what a caller should do about a cloud error.
type Kind int

const (
	// KindTerminal errors do not go away by retrying: a user must change something (policy,
	// the manifest).
	KindTerminal Kind = iota
	// KindNotFound means the resource does not exist; on delete that is success.
	KindNotFound
	// KindConflict means the resource is in a state that does not allow the call yet (409); it
	// resolves itself and never deserves a condition.
	KindConflict
	// KindRetryable errors are transient: rate limits, unavailable services, connection
	// problems, timeouts. RetryAfter says when to try again if the cloud said so.
	KindRetryable
	// KindAuth means Keystone refused the credentials (401, also after a re-authentication):
	// the credentials must change.
	KindAuth
	// KindQuota means the cloud refused the request for its size or the project's quota (413):
	// terminal until the spec or the quota changes.
	KindQuota
)

func (k Kind) String() string {
	switch k {
	case KindNotFound:
		return "not_found"
	case KindConflict:
		return "conflict"
	case KindRetryable:
		return "retryable"
	case KindAuth:
		return "auth"
	case KindQuota:
		return "quota"
	default:
		return "terminal"
	}
}

// Service names as conditions and messages use them.
const (
	NameKeystone  = "Keystone"
	NameGlance    = "Glance"
	NameNova      = "Nova"
	NameNeutron   = "Neutron"
	NameCinder    = "Cinder"
	NameOpenStack = "OpenStack"
)

// Class is the classification of one error.
type Class struct {
	Kind Kind
	// StatusCode is the HTTP status of the answer, 0 when there was none.
	StatusCode int
	// RetryAfter is the cloud's Retry-After for KindRetryable, 0 when it gave none.
	RetryAfter time.Duration
	// Service is the service that failed (NameKeystone, NameGlance), NameOpenStack when the
	// error does not say.
	Service string
	// Problem says what went wrong in a few words safe for conditions (no response body, no
	// credential), e.g. "Glance unavailable (HTTP 503)"; empty for errors that are not from the
	// cloud.
	Problem string
}

// RequestTimeoutError says an OpenStack request got no complete answer within the request
// timeout (see TimeoutTransport).
type RequestTimeoutError struct {
	Method string
	// Path is the request's URL path, without query (which may name images).
	Path    string
	Service string
	After   time.Duration
}

func (e *RequestTimeoutError) Error() string {
	return fmt.Sprintf("%s did not answer %s %s within %s", e.Service, e.Method, e.Path, e.After)
}

// Unwrap makes the timeout a context.DeadlineExceeded for errors.Is.
func (e *RequestTimeoutError) Unwrap() error { return context.DeadlineExceeded }

// Classify is the single place that decides how a cloud error is handled. Everything not known
// to be transient is terminal, so that a new kind of failure surfaces in a condition instead of
// being retried silently forever.
func Classify(err error) Class {
	if err == nil {
		return Class{Kind: KindTerminal}
	}
	if code, service, ok := responseCode(err); ok {
		c := Class{Kind: classifyStatus(code.Actual), StatusCode: code.Actual, Service: service}
		if c.Kind == KindRetryable {
			c.RetryAfter = parseRetryAfter(code.ResponseHeader.Get("Retry-After"), time.Now())
		}
		c.Problem = statusProblem(c)
		return c
	}
	service := serviceOfError(err)
	retryable := func(problem string) Class {
		return Class{Kind: KindRetryable, Service: service, Problem: problem}
	}
	var timeout *RequestTimeoutError
	var netErr net.Error
	switch {
	case errors.As(err, &timeout):
		return Class{Kind: KindRetryable, Service: timeout.Service, Problem: fmt.Sprintf("%s did not answer within %s", timeout.Service, timeout.After)}
	case errors.Is(err, context.DeadlineExceeded):
		return retryable(service + " did not answer in time")
	case errors.Is(err, context.Canceled):
		return retryable("the call to " + service + " was cancelled")
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return retryable("the connection to " + service + " was reset")
	case errors.Is(err, syscall.ECONNREFUSED):
		return retryable(service + " refused the connection")
	case errors.As(err, &netErr):
		return retryable("cannot reach " + service)
	case errors.Is(err, net.ErrClosed), isUnexpectedEOF(err):
		return retryable("the connection to " + service + " closed without an answer")
	}
	return Class{Kind: KindTerminal, Service: service}
}

// IsNotFound reports whether err says the resource does not exist.
func IsNotFound(err error) bool { return err != nil && Classify(err).Kind == KindNotFound }

// IsConflict reports whether err is a 409.
func IsConflict(err error) bool { return err != nil && Classify(err).Kind == KindConflict }

// StatusCode returns the HTTP status of a cloud error, or 0.
func StatusCode(err error) int {
	if code, _, ok := responseCode(err); ok {
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
	case http.StatusUnauthorized:
		return KindAuth
	case http.StatusRequestEntityTooLarge:
		return KindQuota
	case http.StatusTooManyRequests, http.StatusRequestTimeout, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusInternalServerError:
		return KindRetryable
	default:
		// 400, 403 (policy, protected), ...
		return KindTerminal
	}
}

func statusProblem(c Class) string {
	switch {
	case c.StatusCode == http.StatusTooManyRequests:
		return fmt.Sprintf("%s rate limit reached (HTTP 429)", c.Service)
	case c.Kind == KindRetryable:
		return fmt.Sprintf("%s unavailable (HTTP %d)", c.Service, c.StatusCode)
	case c.Kind == KindAuth:
		return fmt.Sprintf("%s refused the credentials (HTTP 401)", c.Service)
	case c.Kind == KindQuota:
		return fmt.Sprintf("%s refused the request as too large for the project's quota or the cloud's limits (HTTP 413)", c.Service)
	}
	return fmt.Sprintf("%s answered HTTP %d", c.Service, c.StatusCode)
}

// responseCode digs the HTTP answer out of gophercloud's error types; gophercloud returns it by
// value or by pointer depending on the path (and wraps it after a re-authentication). It also
// says which service gave it: a failed re-authentication is Keystone's answer, whatever the
// original call was.
func responseCode(err error) (gophercloud.ErrUnexpectedResponseCode, string, bool) {
	var reauth *gophercloud.ErrUnableToReauthenticate
	if errors.As(err, &reauth) && reauth != nil {
		// The re-authentication itself failed: its error decides (e.g. 401 = credentials revoked).
		if c, _, ok := responseCode(reauth.ErrReauth); ok {
			return c, NameKeystone, true
		}
	}
	var v gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &v) {
		return v, serviceOf(v.URL), true
	}
	var p *gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &p) && p != nil {
		return *p, serviceOf(p.URL), true
	}
	return gophercloud.ErrUnexpectedResponseCode{}, "", false
}

// serviceOf tells the services apart by the request URL: catalog URLs vary too much for
// anything but their API paths (Nova's /v2.1, Neutron's /v2.0/networks, Cinder's
// /v3/<project>/limits) and the path prefixes clouds publish them under.
func serviceOf(rawURL string) string {
	path := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		path = u.Path
	}
	switch {
	case strings.Contains(path, "/auth/tokens"), strings.HasSuffix(strings.TrimSuffix(path, "/"), "/v3"),
		strings.HasSuffix(strings.TrimSuffix(path, "/"), "/v2.0"):
		return NameKeystone
	case strings.Contains(path, "/v2/images"), strings.Contains(path, "/v2/info"), strings.Contains(path, "/image"):
		return NameGlance
	case strings.Contains(path, "/v2.1/"), strings.Contains(path, "/compute/"):
		return NameNova
	case strings.Contains(path, "/v2.0/networks"), strings.Contains(path, "/network/"):
		return NameNeutron
	case strings.Contains(path, "/volume/"), cinderLimits.MatchString(path):
		return NameCinder
	}
	return NameOpenStack
}

// cinderLimits matches Cinder's limits path, whose catalog URL ends in the project ID.
var cinderLimits = regexp.MustCompile(`/v3/[^/]+/limits`)

func serviceOfError(err error) string {
	var u *url.Error
	if errors.As(err, &u) {
		return serviceOf(u.URL)
	}
	return NameOpenStack
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
