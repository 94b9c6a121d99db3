package nodeimage

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
)

// HashMismatchError says the downloaded file is not the one the spec asks for.
type HashMismatchError struct {
	URL       string
	Algorithm infrav1.HashAlgorithm
	Want, Got string
}

func (e *HashMismatchError) Error() string {
	return fmt.Sprintf("the %s of %s is %s, not the expected %s", e.Algorithm, e.URL, e.Got, e.Want)
}

// DownloadError says the image file could not be fetched; it uses up a transfer attempt.
type DownloadError struct {
	URL    string
	Status int
	Err    error
}

func (e *DownloadError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("downloading %s: HTTP %d", e.URL, e.Status)
	}
	return fmt.Sprintf("downloading %s: %v", e.URL, e.Err)
}

func (e *DownloadError) Unwrap() error { return e.Err }

// errBodyReused stops an upload that gophercloud would replay after re-authenticating: the
// download stream cannot be rewound, so a replay would send a truncated file.
var errBodyReused = errors.New("the upload stream cannot be replayed after re-authentication")

// upload streams the file at the spec's URL into Glance, hashing it on the way when a hash is
// asked for. The stream ends with an error instead of EOF when the hash does not match, so the
// upload is aborted before Glance has the whole file and the image never becomes active. Both
// requests share one progress deadline (see watchProgress).
func (s *Service) upload(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease, id string) error {
	u := obj.Spec.Image.URL
	ctx, progress := watchProgress(ctx, s.opts.TransferProgressTimeout, u, id)
	defer progress.stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return &DownloadError{URL: u, Err: err}
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		if stalled := progress.stalled(); stalled != nil {
			return stalled
		}
		return &DownloadError{URL: u, Err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return &DownloadError{URL: u, Status: resp.StatusCode}
	}
	body := &verifyingReader{r: progress.reader(resp.Body), url: u}
	if h := obj.Spec.Image.Hash; h != nil {
		body.want, body.algo = h.Value, h.Algorithm
		if h.Algorithm == infrav1.HashAlgorithmSHA256 {
			body.hash = sha256.New()
		} else {
			body.hash = sha512.New()
		}
	}
	err = s.images.UploadData(ctx, id, body)
	if stalled := progress.stalled(); stalled != nil && err != nil {
		// Only a failed upload is a stall: the deadline may fire just after Glance said yes.
		return stalled
	}
	if body.mismatch != nil {
		return body.mismatch
	}
	if body.readErr != nil && !errors.Is(body.readErr, errBodyReused) {
		return &DownloadError{URL: u, Err: body.readErr}
	}
	return err
}

// verifyingReader is the upload body: it hashes, refuses a mismatch at EOF, and refuses to be
// read again once the HTTP transport closed it.
type verifyingReader struct {
	r        io.Reader
	url      string
	hash     hash.Hash
	algo     infrav1.HashAlgorithm
	want     string
	closed   bool
	mismatch *HashMismatchError
	readErr  error
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.closed {
		v.readErr = errBodyReused
		return 0, errBodyReused
	}
	n, err := v.r.Read(p)
	if v.hash != nil {
		v.hash.Write(p[:n])
	}
	switch {
	case errors.Is(err, io.EOF) && v.hash != nil:
		if got := hex.EncodeToString(v.hash.Sum(nil)); got != v.want {
			v.mismatch = &HashMismatchError{URL: v.url, Algorithm: v.algo, Want: v.want, Got: got}
			return n, v.mismatch
		}
	case err != nil && !errors.Is(err, io.EOF):
		v.readErr = err
	}
	return n, err
}

// Close is called by the HTTP transport when it is done with the body.
func (v *verifyingReader) Close() error {
	v.closed = true
	return nil
}

// TransferStalledError says no byte of an upload moved for the progress deadline; it uses up a
// transfer attempt.
type TransferStalledError struct {
	URL     string
	ImageID string
	After   time.Duration
	// Phase says where it stopped (see the phase constants).
	Phase int32
}

// Phases of an upload, for TransferStalledError.
const (
	// PhaseDownload: waiting for the file server (its answer or the next bytes).
	PhaseDownload int32 = iota
	// PhaseUpload: Glance stopped taking bytes.
	PhaseUpload
	// PhaseConfirm: the last byte was sent, Glance did not answer.
	PhaseConfirm
)

func (e *TransferStalledError) Error() string {
	switch e.Phase {
	case PhaseUpload:
		return fmt.Sprintf("Glance stopped taking the data of image %s: no progress for %s", e.ImageID, e.After)
	case PhaseConfirm:
		return fmt.Sprintf("Glance did not confirm the upload of image %s within %s of its last byte", e.ImageID, e.After)
	}
	return fmt.Sprintf("the download of %s stalled: no data for %s", e.URL, e.After)
}

// progressWatch is the progress deadline of one upload: a timer that each byte read from the
// download pushes back, and that cancels the context of both requests when it fires. Glance not
// reading shows as no reads, so one watch covers both ends.
type progressWatch struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	timer   *time.Timer
	timeout time.Duration
	phase   atomic.Int32
}

// watchProgress starts the deadline; call stop when the transfer is over.
func watchProgress(parent context.Context, timeout time.Duration, url, imageID string) (context.Context, *progressWatch) {
	ctx, cancel := context.WithCancelCause(parent)
	w := &progressWatch{ctx: ctx, cancel: cancel, timeout: timeout}
	w.timer = time.AfterFunc(timeout, func() {
		cancel(&TransferStalledError{URL: url, ImageID: imageID, After: timeout, Phase: w.phase.Load()})
	})
	return ctx, w
}

func (w *progressWatch) stop() {
	w.timer.Stop()
	w.cancel(nil)
}

// stalled returns the stall that ended the transfer, or nil.
func (w *progressWatch) stalled() *TransferStalledError {
	var stalled *TransferStalledError
	if errors.As(context.Cause(w.ctx), &stalled) {
		return stalled
	}
	return nil
}

func (w *progressWatch) reader(r io.Reader) io.Reader { return &progressReader{r: r, w: w} }

type progressReader struct {
	r io.Reader
	w *progressWatch
}

func (p *progressReader) Read(b []byte) (int, error) {
	p.w.phase.Store(PhaseDownload)
	n, err := p.r.Read(b)
	if n > 0 {
		p.w.timer.Reset(p.w.timeout)
	}
	if err != nil {
		p.w.phase.Store(PhaseConfirm)
	} else {
		p.w.phase.Store(PhaseUpload)
	}
	return n, err
}
