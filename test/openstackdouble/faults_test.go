package openstackdouble_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imageimport"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

func TestStatusFaults(t *testing.T) {
	tests := []struct {
		name           string
		fault          openstackdouble.Fault
		wantRetryAfter string // empty: no header expected
	}{
		{name: "403", fault: openstackdouble.Fault{Status: http.StatusForbidden}},
		{name: "409", fault: openstackdouble.Fault{Status: http.StatusConflict}},
		{name: "413", fault: openstackdouble.Fault{Status: http.StatusRequestEntityTooLarge}},
		{name: "429 default retry-after", fault: openstackdouble.Fault{Status: http.StatusTooManyRequests}, wantRetryAfter: "1"},
		{name: "503 with retry-after", fault: openstackdouble.Fault{Status: http.StatusServiceUnavailable, RetryAfter: 1500 * time.Millisecond}, wantRetryAfter: "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t)
			c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
			img := createImage(t, c, images.CreateOpts{Name: "f"})
			f := tt.fault
			f.Method, f.Path, f.Times = http.MethodPut, "/v2/images/{id}/file", 1
			h := s.InjectFault(f)

			err := imagedata.Upload(t.Context(), c, img.ID, bytes.NewReader([]byte("data"))).ExtractErr()
			var ue gophercloud.ErrUnexpectedResponseCode
			if !errors.As(err, &ue) || ue.Actual != tt.fault.Status {
				t.Fatalf("upload error = %v, want %d", err, tt.fault.Status)
			}
			if got := ue.ResponseHeader.Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetryAfter)
			}
			if got, _ := s.Image(img.ID); got.Status != openstackdouble.StatusQueued {
				t.Errorf("faulted upload changed the image to %s", got.Status)
			}
			// Times: 1 means the retry goes through.
			if err := imagedata.Upload(t.Context(), c, img.ID, bytes.NewReader([]byte("data"))).ExtractErr(); err != nil {
				t.Fatalf("retrying upload: %v", err)
			}
			if h.Hits() != 1 || s.Calls(openstackdouble.CallUploadImage) != 2 {
				t.Errorf("hits %d, upload calls %d; want 1, 2", h.Hits(), s.Calls(openstackdouble.CallUploadImage))
			}
		})
	}
}

// A 401 looks like an expired token: gophercloud logs in again and repeats the call once.
func TestUnauthorizedFaultTriggersReauth(t *testing.T) {
	s := newServer(t)
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
	img := createImage(t, c, images.CreateOpts{Name: "a"})
	oldToken := c.Token()
	h := s.InjectFault(openstackdouble.Fault{Method: http.MethodPut, Path: "/v2/images/{id}/file", Status: http.StatusUnauthorized, Times: 1})

	data := []byte("payload")
	if err := imagedata.Upload(t.Context(), c, img.ID, bytes.NewReader(data)).ExtractErr(); err != nil {
		t.Fatalf("uploading: %v", err)
	}
	if h.Hits() != 1 || s.Calls(openstackdouble.CallAuthTokens) != 2 || s.Calls(openstackdouble.CallUploadImage) != 2 {
		t.Errorf("hits %d; calls:\n%s", h.Hits(), s)
	}
	// The faulted token is dead for good, as an expired one would be.
	if c.Token() == oldToken {
		t.Error("client still uses the old token")
	}
	if code := getWithToken(t, c.ServiceURL("images", img.ID), oldToken); code != http.StatusUnauthorized {
		t.Errorf("old token: status %d, want 401", code)
	}
	if code := getWithToken(t, c.ServiceURL("images", img.ID), c.Token()); code != http.StatusOK {
		t.Errorf("new token: status %d, want 200", code)
	}
	// The re-sent body was rewound: the stored hash is that of the whole payload.
	_, wantSHA := hashes(data)
	if got, _ := s.Image(img.ID); got.HashValue != wantSHA {
		t.Errorf("hash after re-auth = %s, want %s", got.HashValue, wantSHA)
	}
}

func TestLatencyFault(t *testing.T) {
	s := newServer(t)
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
	h := s.InjectFault(openstackdouble.Fault{Method: http.MethodGet, Path: "/v2/images", Delay: 20 * time.Millisecond})
	for range 2 {
		if _, err := images.List(c, nil).AllPages(t.Context()); err != nil {
			t.Fatalf("listing: %v", err)
		}
	}
	if h.Hits() != 2 {
		t.Errorf("hits = %d, want 2 (Times 0 affects every call)", h.Hits())
	}
	h.Remove()
	if _, err := images.List(c, nil).AllPages(t.Context()); err != nil {
		t.Fatal(err)
	}
	if h.Hits() != 2 {
		t.Errorf("hits = %d after Remove, want 2", h.Hits())
	}
}

func TestConnectionReset(t *testing.T) {
	s := newServer(t)
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
	h := s.InjectFault(openstackdouble.Fault{Method: http.MethodPost, Path: "/v2/images", ResetConnection: true, Times: 1})
	_, err := images.Create(t.Context(), c, images.CreateOpts{Name: "r"}).Extract()
	var ue gophercloud.ErrUnexpectedResponseCode
	if err == nil || errors.As(err, &ue) {
		t.Fatalf("error = %v, want a transport error", err)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("error = %v, want a connection reset", err)
	}
	if h.Hits() != 1 || len(s.Images()) != 0 {
		t.Errorf("hits %d, %d images; want 1, 0", h.Hits(), len(s.Images()))
	}
	if _, err := images.Create(t.Context(), c, images.CreateOpts{Name: "r"}).Extract(); err != nil {
		t.Errorf("creating after the reset: %v", err)
	}
}

// A fault's Path may be a pattern over the real path, to hit one image only.
func TestFaultMatchingByPathPattern(t *testing.T) {
	s := newServer(t)
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
	a := createImage(t, c, images.CreateOpts{Name: "a"})
	b := createImage(t, c, images.CreateOpts{Name: "b"})
	s.InjectFault(openstackdouble.Fault{Path: "/v2/images/" + a.ID + "/*", Status: http.StatusServiceUnavailable})

	tests := []struct {
		call func() error
		want int
	}{
		{call: func() error { return imagedata.Upload(t.Context(), c, a.ID, bytes.NewReader(nil)).ExtractErr() }, want: http.StatusServiceUnavailable},
		{call: func() error { _, err := images.Get(t.Context(), c, a.ID).Extract(); return err }},
		{call: func() error { return imagedata.Upload(t.Context(), c, b.ID, bytes.NewReader(nil)).ExtractErr() }},
	}
	for i, tt := range tests {
		err := tt.call()
		if tt.want == 0 && err != nil || tt.want != 0 && !gophercloud.ResponseCodeIs(err, tt.want) {
			t.Errorf("call %d: error = %v, want status %d", i, err, tt.want)
		}
	}
	s.ClearFaults()
	if err := imagedata.Upload(t.Context(), c, a.ID, bytes.NewReader(nil)).ExtractErr(); err != nil {
		t.Errorf("after ClearFaults: %v", err)
	}
}

func TestKeystoneFault(t *testing.T) {
	s := newServer(t)
	s.InjectFault(openstackdouble.Fault{Path: "/v3/auth/tokens", Status: http.StatusServiceUnavailable, Times: 1})
	if _, _, err := login(t, s, openstackdouble.CloudsYAMLOptions{}); !gophercloud.ResponseCodeIs(err, http.StatusServiceUnavailable) {
		t.Fatalf("login error = %v, want 503", err)
	}
	if _, _, err := login(t, s, openstackdouble.CloudsYAMLOptions{}); err != nil {
		t.Fatalf("second login: %v", err)
	}
}

func TestImportFaults(t *testing.T) {
	data := []byte("image bytes")
	src := fileServer(t, data)
	s := newServer(t)
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
	importInto := func(id string) {
		t.Helper()
		err := imageimport.Create(t.Context(), c, id, imageimport.CreateOpts{Name: imageimport.WebDownloadMethod, URI: src.URL + "/image.qcow2"}).ExtractErr()
		if err != nil {
			t.Fatalf("starting import: %v", err)
		}
	}

	failing := createImage(t, c, images.CreateOpts{Name: "fails"})
	s.InjectFault(openstackdouble.Fault{Method: http.MethodPost, Path: "/v2/images/{id}/import", Import: openstackdouble.ImportFails, Times: 1})
	importInto(failing.ID)
	got := waitForImport(t, s, failing.ID)
	if got.Status != openstackdouble.StatusQueued || got.Properties["os_glance_failed_import"] != "file" {
		t.Errorf("failed import: status %s, properties %v", got.Status, got.Properties)
	}

	hanging := createImage(t, c, images.CreateOpts{Name: "hangs"})
	s.InjectFault(openstackdouble.Fault{Method: http.MethodPost, Path: "/v2/images/{id}/import", Import: openstackdouble.ImportHangs, Times: 1})
	importInto(hanging.ID)

	// A normal import started after the hanging one finishes; the hanging one is still importing.
	normal := createImage(t, c, images.CreateOpts{Name: "normal"})
	importInto(normal.ID)
	if got := waitForImport(t, s, normal.ID); got.Status != openstackdouble.StatusActive {
		t.Errorf("normal import ended %s", got.Status)
	}
	if got, _ := s.Image(hanging.ID); got.Status != openstackdouble.StatusImporting || got.Properties["os_glance_failed_import"] != "" {
		t.Errorf("hanging import: status %s, properties %v", got.Status, got.Properties)
	}
	// While importing, the image takes no data.
	err := imagedata.Upload(t.Context(), c, hanging.ID, bytes.NewReader(data)).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		t.Errorf("upload into importing image: error = %v, want 409", err)
	}
	if s.Calls(openstackdouble.CallImportImage) != 3 {
		t.Errorf("calls:\n%s", s)
	}
}

func TestCallCounts(t *testing.T) {
	s := newServer(t)
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
	img := createImage(t, c, images.CreateOpts{Name: "a"})
	_, _ = images.Get(t.Context(), c, img.ID).Extract()
	_, _ = images.Get(t.Context(), c, img.ID).Extract()
	_ = imagedata.Upload(t.Context(), c, img.ID, bytes.NewReader([]byte("x"))).ExtractErr()
	_ = images.Delete(t.Context(), c, img.ID).ExtractErr()

	want := map[string]int{
		openstackdouble.CallAuthTokens:    1,
		openstackdouble.CallImageVersions: 1, // gophercloud's endpoint discovery in NewImageV2
		openstackdouble.CallCreateImage:   1,
		openstackdouble.CallGetImage:      2,
		openstackdouble.CallUploadImage:   1,
		openstackdouble.CallDeleteImage:   1,
	}
	got := s.CallCounts()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
	if len(got) != len(want) || s.TotalCalls() != 7 {
		t.Errorf("unexpected counters:\n%s", s)
	}
	s.ResetCalls()
	if s.TotalCalls() != 0 || s.Calls(openstackdouble.CallGetImage) != 0 {
		t.Errorf("after reset:\n%s", s)
	}
}

func getWithToken(t *testing.T, url, token string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// A hanging call never answers: the client's own deadline ends it, and the server notices.
func TestHangFault(t *testing.T) {
	s := newServer(t)
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
	h := s.InjectFault(openstackdouble.Fault{Method: http.MethodPost, Path: "/v2/images", Hang: true, Times: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := images.Create(ctx, c, images.CreateOpts{Name: "h"}).Extract()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("create against a hanging Glance: %v, want the client's deadline", err)
	}
	if h.Hits() != 1 || len(s.Images()) != 0 {
		t.Errorf("hits %d, images %d", h.Hits(), len(s.Images()))
	}
	createImage(t, c, images.CreateOpts{Name: "after"})
}

// AfterBytes faults act mid-upload: a status or reset puts the image back to queued, a hang
// leaves it saving.
func TestMidUploadFaults(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 64<<10)
	tests := []struct {
		name       string
		fault      openstackdouble.Fault
		wantStatus int
		wantImage  string
	}{
		{name: "413 after some bytes", fault: openstackdouble.Fault{Status: http.StatusRequestEntityTooLarge}, wantStatus: http.StatusRequestEntityTooLarge, wantImage: openstackdouble.StatusQueued},
		{name: "reset after some bytes", fault: openstackdouble.Fault{ResetConnection: true}, wantImage: openstackdouble.StatusQueued},
		{name: "stall after some bytes", fault: openstackdouble.Fault{Hang: true}, wantImage: openstackdouble.StatusSaving},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t)
			c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
			img := createImage(t, c, images.CreateOpts{Name: "m"})
			f := tt.fault
			f.Method, f.Path, f.AfterBytes, f.Times = http.MethodPut, "/v2/images/{id}/file", 1024, 1
			s.InjectFault(f)
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			// Not rewindable: net/http must not resend it after the reset.
			err := imagedata.Upload(ctx, c, img.ID, io.MultiReader(bytes.NewReader(data))).ExtractErr()
			if err == nil {
				t.Fatal("upload succeeded")
			}
			var ue gophercloud.ErrUnexpectedResponseCode
			if tt.wantStatus != 0 && (!errors.As(err, &ue) || ue.Actual != tt.wantStatus) {
				t.Fatalf("upload error = %v, want %d", err, tt.wantStatus)
			}
			if got, _ := s.Image(img.ID); got.Status != tt.wantImage {
				t.Errorf("image status %s, want %s", got.Status, tt.wantImage)
			}
		})
	}
}
