package openstackdouble_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imageimport"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

func TestCreateAndGet(t *testing.T) {
	s := newServer(t)
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
	id := "8d8a7a2c-8f7e-4d3b-9c59-0c8f5d6e1a2b"
	created := createImage(t, c, images.CreateOpts{
		ID: id, Name: "ubuntu-2404-kube-v1.33.1", Visibility: ptr(images.ImageVisibilityShared),
		Hidden: ptr(true), Tags: []string{"scs", "kube"}, MinDisk: 20, MinRAM: 2048, Protected: ptr(true),
		Properties: map[string]string{"os_distro": "ubuntu", "image_build_date": "2026-01-01"},
	})
	got, err := images.Get(t.Context(), c, id).Extract()
	if err != nil {
		t.Fatalf("getting image: %v", err)
	}
	for _, img := range []*images.Image{created, got} {
		if img.ID != id || img.Status != images.ImageStatusQueued || img.Visibility != images.ImageVisibilityShared ||
			!img.Hidden || !img.Protected || img.MinDiskGigabytes != 20 || img.MinRAMMegabytes != 2048 ||
			img.DiskFormat != "qcow2" || img.ContainerFormat != "bare" || !slices.Equal(img.Tags, []string{"scs", "kube"}) {
			t.Errorf("image = %+v", img)
		}
		if img.Owner != s.ProjectID(openstackdouble.DefaultProject) {
			t.Errorf("owner = %s, want the token's project %s", img.Owner, s.ProjectID(openstackdouble.DefaultProject))
		}
		if img.Properties["os_distro"] != "ubuntu" || img.Properties["image_build_date"] != "2026-01-01" {
			t.Errorf("properties = %v", img.Properties)
		}
	}
	if !slices.Contains(created.OpenStackImageImportMethods, "web-download") {
		t.Errorf("import methods header = %v", created.OpenStackImageImportMethods)
	}

	// Defaults of an image created with a name only.
	plain := createImage(t, c, images.CreateOpts{Name: "plain"})
	if plain.Visibility != images.ImageVisibilityPrivate || plain.Hidden || plain.Protected || len(plain.ID) != 36 {
		t.Errorf("defaults = %+v", plain)
	}

	_, err = images.Get(t.Context(), c, "00000000-0000-0000-0000-000000000000").Extract()
	if !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("get missing image: error = %v, want 404", err)
	}
}

func TestCreateRejects(t *testing.T) {
	s := newServer(t)
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
	existing := createImage(t, c, images.CreateOpts{Name: "existing"})
	deleted := createImage(t, c, images.CreateOpts{Name: "deleted"})
	if err := images.Delete(t.Context(), c, deleted.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		body map[string]any
		want int
	}{
		{name: "existing id", body: map[string]any{"id": existing.ID}, want: http.StatusConflict},
		{name: "id of a deleted image", body: map[string]any{"id": deleted.ID}, want: http.StatusConflict},
		{name: "malformed id", body: map[string]any{"id": "not-a-uuid"}, want: http.StatusBadRequest},
		{name: "bad visibility", body: map[string]any{"visibility": "everyone"}, want: http.StatusBadRequest},
		{name: "bad disk format", body: map[string]any{"disk_format": "zip"}, want: http.StatusBadRequest},
		{name: "non-string property", body: map[string]any{"hw_disk_bus": 3}, want: http.StatusBadRequest},
		{name: "reserved property", body: map[string]any{"os_glance_failed_import": "file"}, want: http.StatusForbidden},
		{name: "read-only status", body: map[string]any{"status": "active"}, want: http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Post(t.Context(), c.ServiceURL("images"), tt.body, nil, &gophercloud.RequestOpts{OkCodes: []int{201}}) //nolint:bodyclose // gophercloud closes the body of a response it returns with an error, and a success fails the test
			if !gophercloud.ResponseCodeIs(err, tt.want) {
				t.Errorf("error = %v, want %d", err, tt.want)
			}
		})
	}
	if n := len(s.Images()); n != 1 {
		t.Errorf("%d images stored, want only the existing one", n)
	}
}

func TestListFiltersAndDefaultHiding(t *testing.T) {
	s := newServer(t, openstackdouble.WithUser(openstackdouble.User{Name: "other", Password: "pw", Projects: []string{"other"}}),
		openstackdouble.WithUser(openstackdouble.User{Name: openstackdouble.DefaultUser, Password: openstackdouble.DefaultPassword, Projects: []string{openstackdouble.DefaultProject}}))
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{User: openstackdouble.DefaultUser})
	mine, other := s.ProjectID(openstackdouble.DefaultProject), s.ProjectID("other")

	createImage(t, c, images.CreateOpts{Name: "plain", Tags: []string{"a"}})
	createImage(t, c, images.CreateOpts{Name: "tagged", Tags: []string{"a", "b"}})
	createImage(t, c, images.CreateOpts{Name: "hidden", Hidden: ptr(true), Tags: []string{"a", "b"}})
	createImage(t, c, images.CreateOpts{Name: "community", Visibility: ptr(images.ImageVisibilityCommunity)})
	createImage(t, c, images.CreateOpts{Name: "public", Visibility: ptr(images.ImageVisibilityPublic)})
	s.AddImage(openstackdouble.Image{Name: "other-private", Owner: other, Status: openstackdouble.StatusActive})
	s.AddImage(openstackdouble.Image{Name: "other-public", Owner: other, Visibility: "public"})
	s.AddImage(openstackdouble.Image{Name: "other-community", Owner: other, Visibility: "community"})
	s.AddImage(openstackdouble.Image{Name: "other-shared-with-me", Owner: other, Visibility: "shared", Members: []string{mine}})
	s.AddImage(openstackdouble.Image{Name: "other-shared", Owner: other, Visibility: "shared"})

	tests := []struct {
		name string
		opts images.ListOpts
		want []string
	}{
		{name: "default", want: []string{"other-shared-with-me", "other-public", "public", "tagged", "plain"}},
		{name: "by name", opts: images.ListOpts{Name: "tagged"}, want: []string{"tagged"}},
		{name: "by name of a hidden image", opts: images.ListOpts{Name: "hidden"}},
		{name: "hidden", opts: images.ListOpts{Hidden: true}, want: []string{"hidden"}},
		{name: "hidden by name and tags", opts: images.ListOpts{Name: "hidden", Hidden: true, Tags: []string{"a", "b"}}, want: []string{"hidden"}},
		{name: "one tag", opts: images.ListOpts{Tags: []string{"a"}}, want: []string{"tagged", "plain"}},
		{name: "all tags must match", opts: images.ListOpts{Tags: []string{"a", "b"}}, want: []string{"tagged"}},
		{name: "community", opts: images.ListOpts{Visibility: images.ImageVisibilityCommunity}, want: []string{"other-community", "community"}},
		{name: "community by name", opts: images.ListOpts{Name: "community", Visibility: images.ImageVisibilityCommunity}, want: []string{"community"}},
		{name: "public", opts: images.ListOpts{Visibility: images.ImageVisibilityPublic}, want: []string{"other-public", "public"}},
		{name: "private", opts: images.ListOpts{Visibility: images.ImageVisibilityPrivate}, want: []string{"tagged", "plain"}},
		{name: "owner", opts: images.ListOpts{Owner: other}, want: []string{"other-shared-with-me", "other-public"}},
		{name: "status", opts: images.ListOpts{Status: images.ImageStatusActive}},
		{name: "all visibilities", opts: images.ListOpts{Visibility: "all"}, want: []string{"other-shared-with-me", "other-community", "other-public", "public", "community", "tagged", "plain"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := names(listAll(t, c, tt.opts))
			if !slices.Equal(got, tt.want) {
				t.Errorf("names = %v, want %v (newest first)", got, tt.want)
			}
		})
	}
}

func TestListPagination(t *testing.T) {
	for _, n := range []int{7, 6, 0} {
		t.Run(fmt.Sprint(n, " images"), func(t *testing.T) {
			s := newServer(t)
			c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
			var want []string
			for i := range n {
				want = append(want, createImage(t, c, images.CreateOpts{Name: fmt.Sprint("img-", i), Tags: []string{"page"}}).ID)
			}
			createImage(t, c, images.CreateOpts{Name: "untagged"})
			s.ResetCalls()

			var got []string
			pages := 0
			err := images.List(c, images.ListOpts{Limit: 3, Tags: []string{"page"}}).EachPage(t.Context(), func(_ context.Context, p pagination.Page) (bool, error) {
				list, err := images.ExtractImages(p)
				if err != nil {
					return false, err
				}
				pages++
				if len(list) > 3 {
					t.Errorf("page of %d images, limit 3", len(list))
				}
				for _, img := range list {
					got = append(got, img.ID)
				}
				return true, nil
			})
			if err != nil {
				t.Fatalf("listing: %v", err)
			}
			sort.Strings(got)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Errorf("listed %d ids, want %d, all different", len(got), len(want))
			}
			// Glance sends a next link whenever a page is full, so a multiple of the limit costs one
			// extra, empty page.
			wantCalls := n/3 + 1
			if got := s.Calls(openstackdouble.CallListImages); got != wantCalls {
				t.Errorf("list calls = %d, want %d", got, wantCalls)
			}
		})
	}
}

func TestPatch(t *testing.T) {
	s := newServer(t)
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
	img := createImage(t, c, images.CreateOpts{Name: "p", Properties: map[string]string{"keep": "1", "drop": "2", "change": "3"}})

	updated, err := images.Update(t.Context(), c, img.ID, images.UpdateOpts{
		images.UpdateImageProperty{Op: images.AddOp, Name: "added", Value: "x"},
		images.UpdateImageProperty{Op: images.ReplaceOp, Name: "change", Value: "33"},
		images.UpdateImageProperty{Op: images.RemoveOp, Name: "drop"},
		images.ReplaceImageTags{NewTags: []string{"t1", "t2"}},
		images.ReplaceImageHidden{NewHidden: true},
		images.ReplaceImageName{NewName: "renamed"},
	}).Extract()
	if err != nil {
		t.Fatalf("patching: %v", err)
	}
	p := updated.Properties
	if p["added"] != "x" || p["change"] != "33" || p["keep"] != "1" || p["drop"] != nil {
		t.Errorf("properties = %v", p)
	}
	if !slices.Equal(updated.Tags, []string{"t1", "t2"}) || !updated.Hidden || updated.Name != "renamed" {
		t.Errorf("image = %+v", updated)
	}

	tests := []struct {
		name  string
		patch images.UpdateOpts
		want  int
	}{
		{name: "replace missing property", patch: images.UpdateOpts{images.UpdateImageProperty{Op: images.ReplaceOp, Name: "nope", Value: "1"}}, want: http.StatusConflict},
		{name: "remove missing property", patch: images.UpdateOpts{images.UpdateImageProperty{Op: images.RemoveOp, Name: "nope"}}, want: http.StatusConflict},
		{name: "read-only checksum", patch: images.UpdateOpts{images.ReplaceImageChecksum{Checksum: "abc"}}, want: http.StatusForbidden},
		{name: "reserved property", patch: images.UpdateOpts{images.UpdateImageProperty{Op: images.AddOp, Name: "os_glance_failed_import", Value: ""}}, want: http.StatusForbidden},
		// The first operation is valid: a failing patch must not apply it either.
		{name: "atomic", patch: images.UpdateOpts{images.ReplaceImageName{NewName: "half"}, images.UpdateImageProperty{Op: images.RemoveOp, Name: "nope"}}, want: http.StatusConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := images.Update(t.Context(), c, img.ID, tt.patch).Extract()
			if !gophercloud.ResponseCodeIs(err, tt.want) {
				t.Errorf("error = %v, want %d", err, tt.want)
			}
		})
	}
	if got, _ := s.Image(img.ID); got.Name != "renamed" {
		t.Errorf("name = %q after failed patches, want renamed", got.Name)
	}
}

func TestUpload(t *testing.T) {
	s := newServer(t, openstackdouble.WithKeepImageData(true))
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
	data := bytes.Repeat([]byte("node image "), 100000)
	wantMD5, wantSHA := hashes(data)

	img := createImage(t, c, images.CreateOpts{Name: "up"})
	if err := imagedata.Upload(t.Context(), c, img.ID, bytes.NewReader(data)).ExtractErr(); err != nil {
		t.Fatalf("uploading: %v", err)
	}
	got, err := images.Get(t.Context(), c, img.ID).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != images.ImageStatusActive || got.SizeBytes != int64(len(data)) || got.Checksum != wantMD5 ||
		got.Properties["os_hash_algo"] != "sha512" || got.Properties["os_hash_value"] != wantSHA {
		t.Errorf("image after upload = %+v", got)
	}
	snap, _ := s.Image(img.ID)
	if snap.HashValue != wantSHA || snap.Size != int64(len(data)) {
		t.Errorf("snapshot = %+v", snap)
	}

	body, err := imagedata.Download(t.Context(), c, img.ID).Extract()
	if err != nil {
		t.Fatal(err)
	}
	down, _ := io.ReadAll(body)
	_ = body.Close()
	if !bytes.Equal(down, data) {
		t.Errorf("downloaded %d bytes, want the %d uploaded", len(down), len(data))
	}

	err = imagedata.Upload(t.Context(), c, img.ID, bytes.NewReader(data)).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		t.Errorf("second upload: error = %v, want 409", err)
	}

	// Glance refuses data for an image whose formats are unset.
	noFormat, err := images.Create(t.Context(), c, images.CreateOpts{Name: "no-format"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	err = imagedata.Upload(t.Context(), c, noFormat.ID, bytes.NewReader(data)).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Errorf("upload without formats: error = %v, want 400", err)
	}
}

func TestWebDownloadImport(t *testing.T) {
	data := bytes.Repeat([]byte("imported "), 50000)
	src := fileServer(t, data)
	wantMD5, wantSHA := hashes(data)

	tests := []struct {
		name       string
		uri        string
		wantStatus string
		wantFailed string
	}{
		{name: "success", uri: src.URL + "/image.qcow2", wantStatus: openstackdouble.StatusActive},
		{name: "source 404", uri: src.URL + "/missing", wantStatus: openstackdouble.StatusQueued, wantFailed: "file"},
		{name: "source unreachable", uri: "http://127.0.0.1:1/image.qcow2", wantStatus: openstackdouble.StatusQueued, wantFailed: "file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t)
			c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
			info, err := imageimport.Get(t.Context(), c).Extract()
			if err != nil || !slices.Contains(info.ImportMethods.Value, string(imageimport.WebDownloadMethod)) {
				t.Fatalf("import info = %+v, %v; want web-download", info, err)
			}
			img := createImage(t, c, images.CreateOpts{Name: "imp"})
			err = imageimport.Create(t.Context(), c, img.ID, imageimport.CreateOpts{Name: imageimport.WebDownloadMethod, URI: tt.uri}).ExtractErr()
			if err != nil {
				t.Fatalf("starting import: %v", err)
			}
			got := waitForImport(t, s, img.ID)
			if got.Status != tt.wantStatus || got.Properties["os_glance_failed_import"] != tt.wantFailed {
				t.Fatalf("after import: status %s, os_glance_failed_import %q; want %s, %q", got.Status,
					got.Properties["os_glance_failed_import"], tt.wantStatus, tt.wantFailed)
			}
			if tt.wantStatus == openstackdouble.StatusActive && (got.Checksum != wantMD5 || got.HashValue != wantSHA || got.HashAlgo != "sha512") {
				t.Errorf("hashes = %s %s %s", got.Checksum, got.HashAlgo, got.HashValue)
			}
			// The client sees the same through the API.
			api, err := images.Get(t.Context(), c, img.ID).Extract()
			if err != nil {
				t.Fatal(err)
			}
			if string(api.Status) != tt.wantStatus || api.Properties["os_glance_failed_import"] != tt.wantFailed {
				t.Errorf("API image = %+v", api)
			}
			if tt.wantStatus == openstackdouble.StatusQueued {
				// A failed import can be retried, e.g. by uploading.
				if err := imagedata.Upload(t.Context(), c, img.ID, bytes.NewReader(data)).ExtractErr(); err != nil {
					t.Errorf("uploading after failed import: %v", err)
				}
			} else {
				err := imageimport.Create(t.Context(), c, img.ID, imageimport.CreateOpts{Name: imageimport.WebDownloadMethod, URI: tt.uri}).ExtractErr()
				if !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
					t.Errorf("importing into an active image: error = %v, want 409", err)
				}
			}
		})
	}
}

func TestWebDownloadDisabled(t *testing.T) {
	s := newServer(t, openstackdouble.WithWebDownload(false))
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
	info, err := imageimport.Get(t.Context(), c).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(info.ImportMethods.Value, "web-download") || len(info.ImportMethods.Value) == 0 {
		t.Errorf("import methods = %v, want some but not web-download", info.ImportMethods.Value)
	}
	img := createImage(t, c, images.CreateOpts{Name: "x"})
	err = imageimport.Create(t.Context(), c, img.ID, imageimport.CreateOpts{Name: imageimport.WebDownloadMethod, URI: "http://127.0.0.1:1/x"}).ExtractErr()
	if !gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
		t.Errorf("import error = %v, want 400", err)
	}
	if got, _ := s.Image(img.ID); got.Status != openstackdouble.StatusQueued {
		t.Errorf("status = %s, want queued", got.Status)
	}
}

func TestDelete(t *testing.T) {
	s := newServer(t, openstackdouble.WithUser(openstackdouble.User{Name: "other", Password: "pw", Projects: []string{"other"}}),
		openstackdouble.WithUser(openstackdouble.User{Name: openstackdouble.DefaultUser, Password: openstackdouble.DefaultPassword, Projects: []string{openstackdouble.DefaultProject}}))
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{User: openstackdouble.DefaultUser})
	protected := createImage(t, c, images.CreateOpts{Name: "protected", Protected: ptr(true)})
	plain := createImage(t, c, images.CreateOpts{Name: "plain"})
	foreign := s.AddImage(openstackdouble.Image{Name: "foreign", Owner: s.ProjectID("other"), Visibility: "public"})
	foreignPrivate := s.AddImage(openstackdouble.Image{Name: "foreign-private", Owner: s.ProjectID("other")})

	tests := []struct {
		name string
		id   string
		want int
	}{
		{name: "protected", id: protected.ID, want: http.StatusForbidden},
		{name: "plain", id: plain.ID, want: http.StatusNoContent},
		{name: "already gone", id: plain.ID, want: http.StatusNotFound},
		{name: "never existed", id: "00000000-0000-0000-0000-000000000000", want: http.StatusNotFound},
		{name: "public image of another project", id: foreign.ID, want: http.StatusForbidden},
		{name: "private image of another project", id: foreignPrivate.ID, want: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := images.Delete(t.Context(), c, tt.id).ExtractErr()
			if tt.want == http.StatusNoContent {
				if err != nil {
					t.Errorf("deleting: %v", err)
				}
				return
			}
			if !gophercloud.ResponseCodeIs(err, tt.want) {
				t.Errorf("error = %v, want %d", err, tt.want)
			}
		})
	}
	if _, ok := s.Image(plain.ID); ok {
		t.Error("deleted image is still stored")
	}
	if _, ok := s.Image(protected.ID); !ok {
		t.Error("protected image was deleted")
	}
}

// The double is used by many reconcilers at once.
func TestConcurrentClients(t *testing.T) {
	s := newServer(t)
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
	const n = 12
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			img, err := images.Create(t.Context(), c, images.CreateOpts{Name: fmt.Sprint("c", i), DiskFormat: "raw", ContainerFormat: "bare"}).Extract()
			if err == nil {
				err = imagedata.Upload(t.Context(), c, img.ID, bytes.NewReader([]byte(fmt.Sprint(i)))).ExtractErr()
			}
			if err == nil {
				_, err = images.List(c, nil).AllPages(t.Context())
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	active := 0
	for _, img := range s.Images() {
		if img.Status == openstackdouble.StatusActive {
			active++
		}
	}
	if active != n || s.Calls(openstackdouble.CallUploadImage) != n || s.Calls(openstackdouble.CallCreateImage) != n {
		t.Errorf("%d active images, want %d; calls:\n%s", active, n, s)
	}
}

func TestFormatConversionChangesStoredHashes(t *testing.T) {
	data := []byte("qcow2 bytes")
	src := fileServer(t, data)
	s := newServer(t, openstackdouble.WithFormatConversion("raw"))
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
	sentMD5, sentSHA := hashes(data)

	uploaded := createImage(t, c, images.CreateOpts{Name: "up"})
	if err := imagedata.Upload(t.Context(), c, uploaded.ID, bytes.NewReader(data)).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	imported := createImage(t, c, images.CreateOpts{Name: "imp"})
	if err := imageimport.Create(t.Context(), c, imported.ID, imageimport.CreateOpts{Name: imageimport.WebDownloadMethod, URI: src.URL + "/image.qcow2"}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	waitForImport(t, s, imported.ID)
	alreadyRaw := createImage(t, c, images.CreateOpts{Name: "raw", DiskFormat: "raw"})
	if err := imagedata.Upload(t.Context(), c, alreadyRaw.ID, bytes.NewReader(data)).ExtractErr(); err != nil {
		t.Fatal(err)
	}

	for _, id := range []string{uploaded.ID, imported.ID} {
		got, _ := s.Image(id)
		if got.Status != openstackdouble.StatusActive || got.DiskFormat != "raw" || got.Checksum == sentMD5 || got.HashValue == sentSHA {
			t.Errorf("converted image = %+v; want active raw with hashes different from the source", got)
		}
	}
	if got, _ := s.Image(alreadyRaw.ID); got.HashValue != sentSHA {
		t.Errorf("image already in the target format was changed: %+v", got)
	}
}
