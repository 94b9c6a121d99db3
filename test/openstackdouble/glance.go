package openstackdouble

import (
	"context"
	"crypto/md5" //nolint:gosec // Glance's checksum field is MD5 by definition.
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Image statuses, as Glance names them.
const (
	StatusQueued    = "queued"
	StatusSaving    = "saving"
	StatusImporting = "importing"
	StatusActive    = "active"
)

// store is the store name the double reports in os_glance_importing_to_stores and
// os_glance_failed_import; a default Glance has a single store named "file".
const store = "file"

// Image is a snapshot of a stored image.
type Image struct {
	ID              string
	Name            string
	Status          string
	Visibility      string
	Hidden          bool
	Protected       bool
	Tags            []string
	ContainerFormat string
	DiskFormat      string
	MinDisk         int
	MinRAM          int
	// Owner is the owning project's ID.
	Owner string
	// Properties holds the extra (non-core) properties, including os_glance_* ones set by imports.
	Properties map[string]string
	// Size, Checksum (MD5), HashAlgo and HashValue describe the stored bytes; zero until data
	// arrived.
	Size      int64
	Checksum  string
	HashAlgo  string
	HashValue string
	// Members are IDs of projects an image with visibility shared is shared with (accepted).
	Members   []string
	CreatedAt time.Time
	UpdatedAt time.Time
}

type image struct {
	Image
	seq  int64
	data []byte
}

func (img *image) snapshot() Image {
	out := img.Image
	out.Tags = slices.Clone(img.Tags)
	out.Members = slices.Clone(img.Members)
	out.Properties = maps.Clone(img.Properties)
	return out
}

// Images returns a snapshot of all stored (not deleted) images, oldest first.
func (s *Server) Images() []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := make([]*image, 0, len(s.images))
	for _, img := range s.images {
		list = append(list, img)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
	out := make([]Image, len(list))
	for i, img := range list {
		out[i] = img.snapshot()
	}
	return out
}

// Image returns a snapshot of one image.
func (s *Server) Image(id string) (Image, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.images[id]
	if !ok {
		return Image{}, false
	}
	return img.snapshot(), true
}

// AddImage stores an image directly, e.g. one a previous run or another project created. Empty
// ID, Status, Visibility and timestamps are defaulted (new UUID, queued, private, now); Owner
// must be a project ID (see ProjectID).
func (s *Server) AddImage(img Image) Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	if img.ID == "" {
		img.ID = newUUID()
	}
	if img.Status == "" {
		img.Status = StatusQueued
	}
	if img.Visibility == "" {
		img.Visibility = "private"
	}
	if img.CreatedAt.IsZero() {
		img.CreatedAt = s.now()
	}
	if img.UpdatedAt.IsZero() {
		img.UpdatedAt = img.CreatedAt
	}
	if img.Properties == nil {
		img.Properties = map[string]string{}
	}
	if img.Tags == nil {
		img.Tags = []string{}
	}
	s.seq++
	n := &image{Image: img, seq: s.seq}
	n.Image = n.snapshot()
	s.images[img.ID] = n
	return n.snapshot()
}

var (
	uuidRE             = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)
	validVisibility    = []string{"public", "private", "shared", "community"}
	validDiskFormats   = []string{"ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"}
	validContainerFmts = []string{"ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"}
	// readOnly are the image attributes a client may not set; Glance answers 403.
	readOnly = []string{"id", "status", "owner", "checksum", "os_hash_algo", "os_hash_value", "size",
		"virtual_size", "created_at", "updated_at", "self", "file", "schema", "direct_url", "locations"}
	coreProps = []string{"name", "visibility", "os_hidden", "protected", "tags", "container_format",
		"disk_format", "min_disk", "min_ram"}
)

func (s *Server) serveGlance(w http.ResponseWriter, r *http.Request, rt route, f Fault) {
	if !slices.Contains(s.cfg.regions, rt.region) || !slices.Contains(catalogInterfaces, rt.iface) {
		writeError(w, http.StatusNotFound, "The resource could not be found.")
		return
	}
	if rt.template == "/image/" {
		s.imageVersions(w, rt)
		return
	}
	t, ok := s.projectToken(w, r, "the image service")
	if !ok {
		return
	}
	switch r.Method + " " + rt.template {
	case CallCreateImage:
		s.createImage(w, r, rt, t)
	case CallListImages:
		s.listImages(w, r, t)
	case CallGetImage:
		s.getImage(w, rt, t)
	case CallUpdateImage:
		s.updateImage(w, r, rt, t)
	case CallDeleteImage:
		s.deleteImage(w, rt, t)
	case CallUploadImage:
		s.uploadImage(w, r, rt, t, f)
	case CallDownloadImage:
		s.downloadImage(w, rt, t)
	case CallImportInfo:
		s.importInfo(w)
	case CallImportImage:
		s.importImage(w, r, rt, t, f)
	case CallImageSchema:
		s.imageSchema(w)
	case CallImageUsage:
		s.imageUsage(w, t)
	default:
		writeError(w, http.StatusNotFound, "The resource could not be found.")
	}
}

func (s *Server) imageVersions(w http.ResponseWriter, rt route) {
	href := s.ImageEndpoint(rt.region, rt.iface) + "v2/"
	var versions []map[string]any
	for i, v := range []string{"v2.17", "v2.16", "v2.15", "v2.9", "v2.0"} {
		status := "SUPPORTED"
		if i == 0 {
			status = "CURRENT"
		}
		versions = append(versions, map[string]any{
			"id": v, "status": status, "links": []map[string]string{{"rel": "self", "href": href}},
		})
	}
	writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": versions})
}

func (s *Server) importMethods() []string {
	if s.cfg.webDownload {
		return []string{"glance-direct", "web-download", "copy-image"}
	}
	return []string{"glance-direct", "copy-image"}
}

// visibleTo reports whether a project may see an image: its own, public and community images, and
// shared images it is a member of.
func visibleTo(img *image, projectID string) bool {
	switch {
	case img.Owner == projectID, img.Visibility == "public", img.Visibility == "community":
		return true
	case img.Visibility == "shared":
		return slices.Contains(img.Members, projectID)
	}
	return false
}

// lookup finds an image the token may see. Glance answers 404 for images of other projects, so
// their existence does not leak.
func (s *Server) lookup(id string, t *token) (*image, bool) {
	img, ok := s.images[id]
	if !ok || !visibleTo(img, t.project.id) {
		return nil, false
	}
	return img, true
}

func (s *Server) imageJSON(img *image) map[string]any {
	m := map[string]any{}
	for k, v := range img.Properties {
		m[k] = v
	}
	nullable := func(v string) any {
		if v == "" {
			return nil
		}
		return v
	}
	m["id"] = img.ID
	m["name"] = nullable(img.Name)
	m["status"] = img.Status
	m["visibility"] = img.Visibility
	m["os_hidden"] = img.Hidden
	m["protected"] = img.Protected
	m["tags"] = slices.Clone(img.Tags)
	m["container_format"] = nullable(img.ContainerFormat)
	m["disk_format"] = nullable(img.DiskFormat)
	m["min_disk"] = img.MinDisk
	m["min_ram"] = img.MinRAM
	m["owner"] = img.Owner
	m["checksum"] = nullable(img.Checksum)
	m["os_hash_algo"] = nullable(img.HashAlgo)
	m["os_hash_value"] = nullable(img.HashValue)
	if img.Checksum != "" {
		m["size"] = img.Size
	} else {
		m["size"] = nil
	}
	m["virtual_size"] = nil
	m["created_at"] = img.CreatedAt.Format(time.RFC3339)
	m["updated_at"] = img.UpdatedAt.Format(time.RFC3339)
	m["self"] = "/v2/images/" + img.ID
	m["file"] = "/v2/images/" + img.ID + "/file"
	m["schema"] = "/v2/schemas/image"
	return m
}

// setCore applies one core attribute from a create body or a patch, validating it like Glance's
// image schema does. It returns an HTTP status and message on failure.
func setCore(img *image, key string, v any) (int, string) {
	bad := func() (int, string) { return http.StatusBadRequest, fmt.Sprintf("Invalid value for %s.", key) }
	str := func() (string, bool) {
		if v == nil {
			return "", true
		}
		s, ok := v.(string)
		return s, ok
	}
	switch key {
	case "name":
		s, ok := str()
		if !ok || len(s) > 255 {
			return bad()
		}
		img.Name = s
	case "visibility":
		s, ok := v.(string)
		if !ok || !slices.Contains(validVisibility, s) {
			return bad()
		}
		img.Visibility = s
	case "os_hidden", "protected":
		b, ok := v.(bool)
		if !ok {
			return bad()
		}
		if key == "os_hidden" {
			img.Hidden = b
		} else {
			img.Protected = b
		}
	case "tags":
		list, ok := v.([]any)
		if !ok {
			return bad()
		}
		tags := []string{}
		for _, e := range list {
			s, ok := e.(string)
			if !ok || s == "" || len(s) > 255 {
				return bad()
			}
			if !slices.Contains(tags, s) {
				tags = append(tags, s)
			}
		}
		img.Tags = tags
	case "container_format", "disk_format":
		s, ok := str()
		valid := validContainerFmts
		if key == "disk_format" {
			valid = validDiskFormats
		}
		if !ok || (s != "" && !slices.Contains(valid, s)) {
			return bad()
		}
		if img.Status != StatusQueued {
			return http.StatusForbidden, fmt.Sprintf("Attribute %s can be only replaced for a queued image.", key)
		}
		if key == "disk_format" {
			img.DiskFormat = s
		} else {
			img.ContainerFormat = s
		}
	case "min_disk", "min_ram":
		n, ok := v.(json.Number)
		if !ok {
			return bad()
		}
		i, err := n.Int64()
		if err != nil || i < 0 {
			return bad()
		}
		if key == "min_disk" {
			img.MinDisk = int(i)
		} else {
			img.MinRAM = int(i)
		}
	}
	return 0, ""
}

// checkExtraProp validates an extra property; Glance only stores strings and reserves os_glance_*.
func checkExtraProp(key string, v any) (string, int, string) {
	if strings.HasPrefix(key, "os_glance") {
		return "", http.StatusForbidden, fmt.Sprintf("Attribute '%s' is reserved.", key)
	}
	s, ok := v.(string)
	if !ok {
		return "", http.StatusBadRequest, fmt.Sprintf("Invalid value for %s: extra properties must be strings.", key)
	}
	if key == "" || len(key) > 255 || len(s) > 65535 {
		return "", http.StatusBadRequest, fmt.Sprintf("Invalid property %q.", key)
	}
	return s, 0, ""
}

func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	return dec.Decode(v)
}

func (s *Server) createImage(w http.ResponseWriter, r *http.Request, rt route, t *token) {
	var body map[string]any
	if err := decodeJSON(r.Body, &body); err != nil {
		writeError(w, http.StatusBadRequest, "Request body is not a JSON object.")
		return
	}
	now := s.now()
	img := &image{Image: Image{
		Status: StatusQueued, Visibility: "private", Owner: t.project.id, Tags: []string{},
		Properties: map[string]string{}, CreatedAt: now, UpdatedAt: now,
	}}
	keys := slices.Sorted(maps.Keys(body))
	for _, k := range keys {
		v := body[k]
		switch {
		case k == "id":
			id, ok := v.(string)
			if !ok || !uuidRE.MatchString(id) {
				writeError(w, http.StatusBadRequest, "Invalid image id.")
				return
			}
			img.ID = id
		case k == "owner":
			if v != t.project.id {
				writeError(w, http.StatusForbidden, "You are not permitted to create images owned by another project.")
				return
			}
		case slices.Contains(readOnly, k):
			writeError(w, http.StatusForbidden, fmt.Sprintf("Attribute '%s' is read-only.", k))
			return
		case slices.Contains(coreProps, k):
			if code, msg := setCore(img, k, v); code != 0 {
				writeError(w, code, msg)
				return
			}
		default:
			sv, code, msg := checkExtraProp(k, v)
			if code != 0 {
				writeError(w, code, msg)
				return
			}
			img.Properties[k] = sv
		}
	}

	s.mu.Lock()
	if img.ID == "" {
		img.ID = newUUID()
	}
	if _, exists := s.images[img.ID]; exists || s.deleted[img.ID] {
		s.mu.Unlock()
		writeError(w, http.StatusConflict, fmt.Sprintf("Image with identifier %s already exists!", img.ID))
		return
	}
	s.seq++
	img.seq = s.seq
	s.images[img.ID] = img
	out := s.imageJSON(img)
	s.mu.Unlock()

	w.Header().Set("Location", s.ImageEndpoint(rt.region, rt.iface)+"v2/images/"+img.ID)
	w.Header().Set("OpenStack-image-import-methods", strings.Join(s.importMethods(), ","))
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) getImage(w http.ResponseWriter, rt route, t *token) {
	s.mu.Lock()
	img, ok := s.lookup(rt.imageID, t)
	var out map[string]any
	if ok {
		out = s.imageJSON(img)
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("No image found with ID %s", rt.imageID))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// listImages implements Glance's listing: newest first, filters ANDed, hidden and community
// images left out unless asked for, marker/limit pagination with a next link whenever a page is
// full (so a client also has to cope with a last, empty page).
func (s *Server) listImages(w http.ResponseWriter, r *http.Request, t *token) {
	q := r.URL.Query()
	limit := DefaultPageSize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "limit param must be a non-negative integer")
			return
		}
		limit = min(n, MaxPageSize)
	}
	hidden := false
	if v := q.Get("os_hidden"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "os_hidden must be a boolean")
			return
		}
		hidden = b
	}
	visibility := q.Get("visibility")
	if visibility != "" && visibility != "all" && !slices.Contains(validVisibility, visibility) {
		writeError(w, http.StatusBadRequest, "Invalid visibility value: "+visibility)
		return
	}
	tags := q["tag"]

	s.mu.Lock()
	var list []*image
	for _, img := range s.images {
		switch {
		case !visibleTo(img, t.project.id),
			img.Hidden != hidden,
			visibility == "" && img.Visibility == "community",
			visibility != "" && visibility != "all" && img.Visibility != visibility,
			q.Has("name") && img.Name != q.Get("name"),
			q.Has("status") && img.Status != q.Get("status"),
			q.Has("owner") && img.Owner != q.Get("owner"),
			q.Has("id") && img.ID != q.Get("id"),
			q.Has("disk_format") && img.DiskFormat != q.Get("disk_format"),
			q.Has("container_format") && img.ContainerFormat != q.Get("container_format"):
			continue
		}
		all := true
		for _, tag := range tags {
			all = all && slices.Contains(img.Tags, tag)
		}
		if all {
			list = append(list, img)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].seq > list[j].seq })
	if marker := q.Get("marker"); marker != "" {
		i := slices.IndexFunc(list, func(img *image) bool { return img.ID == marker })
		if i < 0 {
			s.mu.Unlock()
			writeError(w, http.StatusBadRequest, "marker "+marker+" could not be found.")
			return
		}
		list = list[i+1:]
	}
	if len(list) > limit {
		list = list[:limit]
	}
	images := make([]map[string]any, 0, len(list))
	for _, img := range list {
		images = append(images, s.imageJSON(img))
	}
	s.mu.Unlock()

	body := map[string]any{"images": images, "first": "/v2/images", "schema": "/v2/schemas/images"}
	if len(list) > 0 && len(list) == limit {
		next := url.Values{}
		for k, v := range q {
			next[k] = v
		}
		next.Set("marker", list[len(list)-1].ID)
		body["next"] = "/v2/images?" + next.Encode()
	}
	writeJSON(w, http.StatusOK, body)
}

// ownedImage looks an image up for a change: 404 when invisible, 403 when visible but owned by
// another project.
func (s *Server) ownedImage(w http.ResponseWriter, id string, t *token) (*image, bool) {
	img, ok := s.lookup(id, t)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("No image found with ID %s", id))
		return nil, false
	}
	if img.Owner != t.project.id {
		writeError(w, http.StatusForbidden, "You are not permitted to modify this image.")
		return nil, false
	}
	return img, true
}

func (s *Server) updateImage(w http.ResponseWriter, r *http.Request, rt route, t *token) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/openstack-images-v2.1-json-patch" && ct != "application/openstack-images-v2.0-json-patch" {
		writeError(w, http.StatusUnsupportedMediaType, "Unsupported Content-Type "+ct)
		return
	}
	var ops []struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	if err := decodeJSON(r.Body, &ops); err != nil {
		writeError(w, http.StatusBadRequest, "Request body is not a JSON patch.")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.ownedImage(w, rt.imageID, t)
	if !ok {
		return
	}
	// Work on a copy so a failing operation leaves the image unchanged, like Glance's atomic PATCH.
	work := &image{Image: img.snapshot()}
	for _, op := range ops {
		key := strings.TrimPrefix(op.Path, "/")
		if key == "" || strings.Contains(key, "/") {
			writeError(w, http.StatusBadRequest, "Invalid JSON pointer "+op.Path)
			return
		}
		if slices.Contains(readOnly, key) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("Attribute '%s' is read-only.", key))
			return
		}
		switch op.Op {
		case "add", "replace":
			if slices.Contains(coreProps, key) {
				if code, msg := setCore(work, key, op.Value); code != 0 {
					writeError(w, code, msg)
					return
				}
				continue
			}
			sv, code, msg := checkExtraProp(key, op.Value)
			if code != 0 {
				writeError(w, code, msg)
				return
			}
			if _, exists := work.Properties[key]; op.Op == "replace" && !exists {
				writeError(w, http.StatusConflict, fmt.Sprintf("Property %s does not exist.", key))
				return
			}
			work.Properties[key] = sv
		case "remove":
			if slices.Contains(coreProps, key) {
				writeError(w, http.StatusForbidden, fmt.Sprintf("Attribute '%s' cannot be removed.", key))
				return
			}
			if strings.HasPrefix(key, "os_glance") {
				writeError(w, http.StatusForbidden, fmt.Sprintf("Attribute '%s' is reserved.", key))
				return
			}
			if _, exists := work.Properties[key]; !exists {
				writeError(w, http.StatusConflict, fmt.Sprintf("Property %s does not exist.", key))
				return
			}
			delete(work.Properties, key)
		default:
			writeError(w, http.StatusBadRequest, "Invalid operation "+op.Op)
			return
		}
	}
	img.Image = work.Image
	img.UpdatedAt = s.now()
	writeJSON(w, http.StatusOK, s.imageJSON(img))
}

func (s *Server) deleteImage(w http.ResponseWriter, rt route, t *token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.ownedImage(w, rt.imageID, t)
	if !ok {
		return
	}
	if img.Protected {
		writeError(w, http.StatusForbidden, fmt.Sprintf("Image %s is protected and cannot be deleted.", img.ID))
		return
	}
	delete(s.images, img.ID)
	s.deleted[img.ID] = true
	w.WriteHeader(http.StatusNoContent)
}

type hasher struct {
	md5, sha hash.Hash
	size     int64
	keep     bool
	data     []byte
}

func newHasher(keep bool) *hasher {
	return &hasher{md5: md5.New(), sha: sha512.New(), keep: keep} //nolint:gosec // see import
}

func (h *hasher) Write(p []byte) (int, error) {
	h.md5.Write(p)
	h.sha.Write(p)
	h.size += int64(len(p))
	if h.keep {
		h.data = append(h.data, p...)
	}
	return len(p), nil
}

// finish records the hashed bytes on the image and makes it active, converting it first when
// the server is configured to.
func (h *hasher) finish(img *image, now time.Time, convertTo string) {
	if convertTo != "" && img.DiskFormat != convertTo {
		// Stand-in for a real conversion: any change of the bytes changes every hash.
		_, _ = fmt.Fprintf(h, "converted from %s to %s", img.DiskFormat, convertTo)
		img.DiskFormat = convertTo
	}
	img.Size = h.size
	img.Checksum = hex.EncodeToString(h.md5.Sum(nil))
	img.HashAlgo = "sha512"
	img.HashValue = hex.EncodeToString(h.sha.Sum(nil))
	img.data = h.data
	img.Status = StatusActive
	img.UpdatedAt = now
}

// startData moves a queued image into a data-receiving status, checking what Glance checks first.
func (s *Server) startData(w http.ResponseWriter, id string, t *token, status string) (*image, bool) {
	img, ok := s.ownedImage(w, id, t)
	if !ok {
		return nil, false
	}
	if img.Status != StatusQueued {
		writeError(w, http.StatusConflict, fmt.Sprintf("Image status transition from %s to %s is not allowed", img.Status, status))
		return nil, false
	}
	if img.DiskFormat == "" || img.ContainerFormat == "" {
		writeError(w, http.StatusBadRequest, "Properties disk_format, container_format must be set prior to saving data.")
		return nil, false
	}
	img.Status = status
	img.UpdatedAt = s.now()
	return img, true
}

func (s *Server) uploadImage(w http.ResponseWriter, r *http.Request, rt route, t *token, f Fault) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/octet-stream" {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/octet-stream")
		return
	}
	s.mu.Lock()
	img, ok := s.startData(w, rt.imageID, t, StatusSaving)
	s.mu.Unlock()
	if !ok {
		return
	}

	h := newHasher(s.cfg.keepData)
	if f.AfterBytes > 0 {
		if _, err := io.CopyN(h, r.Body, f.AfterBytes); err == nil {
			if f.Hang {
				// Stuck mid-transfer: no more reads, no answer, the image stays saving.
				<-s.ctx.Done()
				return
			}
			if f.Status != 0 || f.ResetConnection {
				// Back to queued before the client hears of the failure, as Glance does.
				s.mu.Lock()
				if cur, ok := s.images[img.ID]; ok && cur == img && img.Status == StatusSaving {
					img.Status = StatusQueued
					img.UpdatedAt = s.now()
				}
				s.mu.Unlock()
			}
			if s.act(w, r, f) {
				return
			}
		}
	}
	_, err := io.Copy(h, r.Body)

	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.images[img.ID]; !ok || cur != img {
		writeError(w, http.StatusGone, "Image was deleted while its data was being saved.")
		return
	}
	if err != nil {
		// An interrupted upload leaves nothing behind: the image can be uploaded again.
		img.Status = StatusQueued
		img.UpdatedAt = s.now()
		writeError(w, http.StatusBadRequest, "Error reading image data.")
		return
	}
	h.finish(img, s.now(), s.cfg.convertTo)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) downloadImage(w http.ResponseWriter, rt route, t *token) {
	s.mu.Lock()
	img, ok := s.lookup(rt.imageID, t)
	var data []byte
	var checksum string
	var kept bool
	if ok {
		data, checksum, kept = img.data, img.Checksum, img.data != nil || img.Size == 0
	}
	s.mu.Unlock()
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, fmt.Sprintf("No image found with ID %s", rt.imageID))
	case checksum == "":
		w.WriteHeader(http.StatusNoContent)
	case !kept:
		writeError(w, http.StatusServiceUnavailable, "The double did not keep this image's data (see WithKeepImageData).")
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-MD5", checksum)
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data)
	}
}

func (s *Server) importInfo(w http.ResponseWriter) {
	writeJSON(w, http.StatusOK, map[string]any{"import-methods": map[string]any{
		"description": "Import methods available.",
		"type":        "array",
		"value":       s.importMethods(),
	}})
}

// importImage starts a web-download import. Only web-download is modelled; the other listed
// methods need staged data or another store, which this double does not have.
func (s *Server) importImage(w http.ResponseWriter, r *http.Request, rt route, t *token, f Fault) {
	var body struct {
		Method struct {
			Name string `json:"name"`
			URI  string `json:"uri"`
		} `json:"method"`
	}
	if err := decodeJSON(r.Body, &body); err != nil {
		writeError(w, http.StatusBadRequest, "Request body is not a JSON object.")
		return
	}
	if !slices.Contains(s.importMethods(), body.Method.Name) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Import method %s is not valid for this cloud.", body.Method.Name))
		return
	}
	if body.Method.Name != "web-download" {
		writeError(w, http.StatusConflict, fmt.Sprintf("Image %s has no data staged for %s.", rt.imageID, body.Method.Name))
		return
	}
	u, err := url.Parse(body.Method.URI)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		writeError(w, http.StatusBadRequest, "URI for web-download must be an http(s) URL.")
		return
	}

	s.mu.Lock()
	img, ok := s.startData(w, rt.imageID, t, StatusImporting)
	if ok {
		img.Properties["os_glance_importing_to_stores"] = store
		img.Properties["os_glance_failed_import"] = ""
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	go s.runImport(img, body.Method.URI, f.Import)
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) runImport(img *image, uri string, outcome ImportOutcome) {
	defer s.wg.Done()
	var h *hasher
	var err error
	switch outcome {
	case ImportHangs:
		<-s.ctx.Done()
		return
	case ImportFails:
		err = fmt.Errorf("injected import failure")
	default:
		h, err = s.fetch(uri)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.images[img.ID]; !ok || cur != img || img.Status != StatusImporting {
		return
	}
	img.Properties["os_glance_importing_to_stores"] = ""
	if err != nil {
		// Glance reports a failed import only through this property and the status going back.
		img.Properties["os_glance_failed_import"] = store
		img.Status = StatusQueued
		img.UpdatedAt = s.now()
		return
	}
	h.finish(img, s.now(), s.cfg.convertTo)
}

func (s *Server) fetch(uri string) (*hasher, error) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.cfg.importClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: status %s", uri, resp.Status)
	}
	h := newHasher(s.cfg.keepData)
	if _, err := io.Copy(h, resp.Body); err != nil {
		return nil, err
	}
	return h, nil
}
