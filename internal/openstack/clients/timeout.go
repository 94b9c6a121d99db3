package clients

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"
)

// transferKey marks a context whose requests stream data of unknown duration.
type transferKey struct{}

// WithTransfer marks ctx as the context of a data transfer (an image upload): TimeoutTransport
// gives its requests no total deadline, because a large image takes as long as it takes. The
// caller must bound the transfer itself, by a progress deadline.
func WithTransfer(ctx context.Context) context.Context {
	return context.WithValue(ctx, transferKey{}, true)
}

func isTransfer(ctx context.Context) bool {
	v, _ := ctx.Value(transferKey{}).(bool)
	return v
}

// TimeoutTransport gives every request through next a deadline of timeout, from sending it to
// the end of reading the answer, so that a cloud that hangs gives an error instead of holding a
// worker forever. It works per request, not per call: a listing of many pages gets timeout for
// each page, and the Keystone requests gophercloud makes on its own (login, re-authentication)
// get it too. Requests of a context marked WithTransfer are left alone. timeout <= 0 disables it.
func TimeoutTransport(next http.RoundTripper, timeout time.Duration) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	if timeout <= 0 {
		return next
	}
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		parent := req.Context()
		if isTransfer(parent) {
			return next.RoundTrip(req)
		}
		ctx, cancel := context.WithTimeout(parent, timeout)
		timedOut := func() error {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && parent.Err() == nil {
				return &RequestTimeoutError{Method: req.Method, Path: req.URL.Path, Service: serviceOf(req.URL.String()), After: timeout}
			}
			return nil
		}
		resp, err := next.RoundTrip(req.WithContext(ctx))
		if err != nil {
			cancel()
			if t := timedOut(); t != nil {
				return nil, t
			}
			return nil, err
		}
		resp.Body = &deadlineBody{ReadCloser: resp.Body, cancel: cancel, timedOut: timedOut}
		return resp, nil
	})
}

// deadlineBody ends the request's deadline when the answer has been read, and names a timeout
// that hit while reading it.
type deadlineBody struct {
	io.ReadCloser
	cancel   context.CancelFunc
	timedOut func() error
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		if t := b.timedOut(); t != nil {
			return n, t
		}
	}
	return n, err
}

func (b *deadlineBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
