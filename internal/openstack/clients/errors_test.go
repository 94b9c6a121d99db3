package clients

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
)

func responseErr(status int, header http.Header) error {
	return gophercloud.ErrUnexpectedResponseCode{Actual: status, ResponseHeader: header, Method: "GET", URL: "http://cloud/v2/images"}
}

func TestClassify(t *testing.T) {
	retryAfter := func(v string) http.Header { return http.Header{"Retry-After": []string{v}} }
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{name: "404", err: responseErr(404, nil), want: Class{Kind: KindNotFound, StatusCode: 404}},
		{name: "404 by pointer, wrapped", err: fmt.Errorf("getting: %w", &gophercloud.ErrUnexpectedResponseCode{Actual: 404}), want: Class{Kind: KindNotFound, StatusCode: 404}},
		{name: "409", err: responseErr(409, nil), want: Class{Kind: KindConflict, StatusCode: 409}},
		{name: "429 with Retry-After", err: responseErr(429, retryAfter("7")), want: Class{Kind: KindRetryable, StatusCode: 429, RetryAfter: 7 * time.Second}},
		{name: "503 with Retry-After", err: responseErr(503, retryAfter("2")), want: Class{Kind: KindRetryable, StatusCode: 503, RetryAfter: 2 * time.Second}},
		{name: "503 without Retry-After", err: responseErr(503, nil), want: Class{Kind: KindRetryable, StatusCode: 503}},
		{name: "503 with bad Retry-After", err: responseErr(503, retryAfter("soon")), want: Class{Kind: KindRetryable, StatusCode: 503}},
		{name: "403 policy or protected", err: responseErr(403, nil), want: Class{Kind: KindTerminal, StatusCode: 403}},
		{name: "413 quota", err: responseErr(413, nil), want: Class{Kind: KindTerminal, StatusCode: 413}},
		{name: "400", err: responseErr(400, nil), want: Class{Kind: KindTerminal, StatusCode: 400}},
		{name: "error after reauthentication", err: &gophercloud.ErrErrorAfterReauthentication{ErrOriginal: responseErr(404, nil)}, want: Class{Kind: KindNotFound, StatusCode: 404}},
		{name: "reauthentication refused", err: &gophercloud.ErrUnableToReauthenticate{ErrOriginal: responseErr(401, nil), ErrReauth: responseErr(401, nil)}, want: Class{Kind: KindTerminal, StatusCode: 401}},
		{name: "connection reset", err: &url.Error{Op: "Put", URL: "http://cloud", Err: &net.OpError{Op: "read", Err: syscall.ECONNRESET}}, want: Class{Kind: KindRetryable}},
		{name: "connection refused", err: &url.Error{Op: "Get", URL: "http://cloud", Err: syscall.ECONNREFUSED}, want: Class{Kind: KindRetryable}},
		{name: "unexpected EOF", err: &url.Error{Op: "Put", URL: "http://cloud", Err: io.ErrUnexpectedEOF}, want: Class{Kind: KindRetryable}},
		{name: "deadline", err: fmt.Errorf("listing: %w", context.DeadlineExceeded), want: Class{Kind: KindRetryable}},
		{name: "unknown", err: errors.New("something odd"), want: Class{Kind: KindTerminal}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.err); got != tt.want {
				t.Errorf("Classify() = %+v, want %+v", got, tt.want)
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
