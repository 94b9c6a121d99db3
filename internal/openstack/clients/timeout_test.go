package clients

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestTimeoutTransport runs requests against a server that never answers and one that answers
// at once: the first ends with a *RequestTimeoutError (classified as retryable), the second is
// untouched; a transfer context gets no deadline from the transport.
func TestTimeoutTransport(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
			_, _ = io.WriteString(w, "late")
		}
	}))
	defer hang.Close()
	defer close(release)
	quick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer quick.Close()

	hc := &http.Client{Transport: TimeoutTransport(http.DefaultTransport, 50*time.Millisecond)}
	get := func(ctx context.Context, u string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return "", err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	_, err := get(context.Background(), hang.URL+"/v2/images")
	var timeout *RequestTimeoutError
	if !errors.As(err, &timeout) {
		t.Fatalf("hanging request: got %v, want a *RequestTimeoutError", err)
	}
	if timeout.Service != NameGlance || timeout.Path != "/v2/images" || timeout.After != 50*time.Millisecond {
		t.Errorf("timeout = %+v", timeout)
	}
	if c := Classify(err); c.Kind != KindRetryable || c.Service != NameGlance {
		t.Errorf("Classify(timeout) = %+v, want retryable Glance", c)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a request timeout must be a context.DeadlineExceeded")
	}

	// A caller's own cancellation is not a request timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := get(ctx, hang.URL); errors.As(err, &timeout) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: got %v, want context.Canceled", err)
	}

	if body, err := get(context.Background(), quick.URL); err != nil || body != "ok" {
		t.Errorf("quick request: %q, %v", body, err)
	}

	// A transfer is bounded by its caller only: it outlives the request timeout.
	done := make(chan error, 1)
	tctx, tcancel := context.WithCancel(WithTransfer(context.Background()))
	defer tcancel()
	go func() { _, err := get(tctx, hang.URL); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("a transfer ended by itself: %v", err)
	case <-time.After(200 * time.Millisecond):
		// Four request timeouts later the transfer still runs; this only waits, it asserts no
		// duration.
	}
	tcancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("transfer: got %v, want context.Canceled", err)
	}
}
