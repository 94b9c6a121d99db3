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
// upload is aborted before Glance has the whole file and the image never becomes active.
func (s *Service) upload(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease, id string) error {
	u := obj.Spec.Image.URL
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return &DownloadError{URL: u, Err: err}
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return &DownloadError{URL: u, Err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return &DownloadError{URL: u, Status: resp.StatusCode}
	}
	body := &verifyingReader{r: resp.Body, url: u}
	if h := obj.Spec.Image.Hash; h != nil {
		body.want, body.algo = h.Value, h.Algorithm
		if h.Algorithm == infrav1.HashAlgorithmSHA256 {
			body.hash = sha256.New()
		} else {
			body.hash = sha512.New()
		}
	}
	err = s.images.UploadData(ctx, id, body)
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
