package clients

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
)

func responseErr(status int, header http.Header) error {
	return gophercloud.ErrUnexpectedResponseCode{Actual: status, ResponseHeader: header, Method: "GET", URL: "http://cloud/v2/images", Body: []byte("Injected fault.")}
}

func TestClassify(t *testing.T) {
	retryAfter := func(v string) http.Header { return http.Header{"Retry-After": []string{v}} }
	keystone := func(status int) error {
		return gophercloud.ErrUnexpectedResponseCode{Actual: status, Method: "POST", URL: "http://cloud/identity/v3/auth/tokens"}
	}
	const glance, ks = NameGlance, NameKeystone
	tests := []struct {
		name string
		err  error
		want Class
		// problem is a part of the message that must be there, if set.
		problem string
	}{
		{name: "404", err: responseErr(404, nil), want: Class{Kind: KindNotFound, StatusCode: 404, Service: glance}},
		{name: "404 by pointer, wrapped", err: fmt.Errorf("getting: %w", &gophercloud.ErrUnexpectedResponseCode{Actual: 404, URL: "http://cloud/v2/images/x"}), want: Class{Kind: KindNotFound, StatusCode: 404, Service: glance}},
		{name: "409", err: responseErr(409, nil), want: Class{Kind: KindConflict, StatusCode: 409, Service: glance}},
		{name: "429 with Retry-After", err: responseErr(429, retryAfter("7")), want: Class{Kind: KindRetryable, StatusCode: 429, RetryAfter: 7 * time.Second, Service: glance}, problem: "Glance rate limit reached (HTTP 429)"},
		{name: "503 with Retry-After", err: responseErr(503, retryAfter("2")), want: Class{Kind: KindRetryable, StatusCode: 503, RetryAfter: 2 * time.Second, Service: glance}, problem: "Glance unavailable (HTTP 503)"},
		{name: "503 without Retry-After", err: responseErr(503, nil), want: Class{Kind: KindRetryable, StatusCode: 503, Service: glance}},
		{name: "503 with bad Retry-After", err: responseErr(503, retryAfter("soon")), want: Class{Kind: KindRetryable, StatusCode: 503, Service: glance}},
		{name: "Keystone 503 is unavailable, not credentials", err: keystone(503), want: Class{Kind: KindRetryable, StatusCode: 503, Service: ks}, problem: "Keystone unavailable (HTTP 503)"},
		{name: "Keystone 401 is auth", err: keystone(401), want: Class{Kind: KindAuth, StatusCode: 401, Service: ks}},
		{name: "403 policy or protected", err: responseErr(403, nil), want: Class{Kind: KindTerminal, StatusCode: 403, Service: glance}},
		{name: "413 quota", err: responseErr(413, nil), want: Class{Kind: KindQuota, StatusCode: 413, Service: glance}, problem: "quota"},
		{name: "400", err: responseErr(400, nil), want: Class{Kind: KindTerminal, StatusCode: 400, Service: glance}},
		{name: "error after reauthentication", err: &gophercloud.ErrErrorAfterReauthentication{ErrOriginal: responseErr(404, nil)}, want: Class{Kind: KindNotFound, StatusCode: 404, Service: glance}},
		{name: "reauthentication refused", err: &gophercloud.ErrUnableToReauthenticate{ErrOriginal: responseErr(401, nil), ErrReauth: keystone(401)}, want: Class{Kind: KindAuth, StatusCode: 401, Service: ks}, problem: "Keystone refused the credentials"},
		{name: "reauthentication unavailable", err: &gophercloud.ErrUnableToReauthenticate{ErrOriginal: responseErr(401, nil), ErrReauth: responseErr(503, retryAfter("3"))}, want: Class{Kind: KindRetryable, StatusCode: 503, RetryAfter: 3 * time.Second, Service: ks}, problem: "Keystone unavailable"},
		{name: "connection reset", err: &url.Error{Op: "Put", URL: "http://cloud/v2/images/x/file", Err: &net.OpError{Op: "read", Err: syscall.ECONNRESET}}, want: Class{Kind: KindRetryable, Service: glance}, problem: "connection to Glance was reset"},
		{name: "connection refused", err: &url.Error{Op: "Get", URL: "http://cloud/v3", Err: syscall.ECONNREFUSED}, want: Class{Kind: KindRetryable, Service: ks}},
		{name: "unexpected EOF", err: &url.Error{Op: "Put", URL: "http://cloud", Err: io.ErrUnexpectedEOF}, want: Class{Kind: KindRetryable, Service: NameOpenStack}},
		{name: "request timeout", err: &url.Error{Op: "Get", URL: "http://cloud/v2/images", Err: &RequestTimeoutError{Method: "GET", Path: "/v2/images", Service: glance, After: time.Second}}, want: Class{Kind: KindRetryable, Service: glance}, problem: "Glance did not answer within 1s"},
		{name: "deadline", err: fmt.Errorf("listing: %w", context.DeadlineExceeded), want: Class{Kind: KindRetryable, Service: NameOpenStack}},
		{name: "unknown", err: errors.New("something odd"), want: Class{Kind: KindTerminal, Service: NameOpenStack}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(tt.err)
			problem := got.Problem
			got.Problem = ""
			if got != tt.want {
				t.Errorf("Classify() = %+v, want %+v", got, tt.want)
			}
			if !strings.Contains(problem, tt.problem) {
				t.Errorf("Problem = %q, want it to contain %q", problem, tt.problem)
			}
			if tt.want.StatusCode != 0 && strings.Contains(problem, "Injected") {
				t.Errorf("Problem %q quotes the response body", problem)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := map[string]time.Duration{
		"":    0,
		"0":   0,
		"-3":  0,
		"120": 2 * time.Minute,
		now.Add(30 * time.Second).Format(http.TimeFormat): 30 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
		"tomorrow": 0,
	}
	for in, want := range tests {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}
