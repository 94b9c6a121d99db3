package openstackdouble

import "net/http"

// VolumeLimits are the absolute limits Cinder reports for the project (GET /limits); -1 means
// unlimited.
type VolumeLimits struct {
	MaxVolumes, VolumesUsed     int
	MaxGigabytes, GigabytesUsed int
}

// DefaultVolumeLimits are Cinder's default quotas with nothing in use.
var DefaultVolumeLimits = VolumeLimits{MaxVolumes: 10, MaxGigabytes: 1000}

// ImageUsage is what Glance's GET /v2/info/usage reports (unified limits): limit -1 is
// unlimited. Sizes are in MiB, as Glance reports image_size_total.
type ImageUsage struct {
	SizeLimit, SizeUsed   int64
	CountLimit, CountUsed int64
}

// SetVolumeLimits sets what Cinder's limits call answers.
func (s *Server) SetVolumeLimits(l VolumeLimits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.cloud.volume, s.cfg.cloud.volumeSet = l, true
}

// SetImageUsage sets what Glance's usage call answers; nil answers 404, as a Glance older than
// the usage API (Yoga) does. Unset, it reports no limits and the images stored.
func (s *Server) SetImageUsage(u *ImageUsage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.cloud.usage, s.cfg.cloud.usageSet = u, true
}

func (s *Server) volumeLimits(w http.ResponseWriter) {
	s.mu.Lock()
	l := s.cfg.cloud.volume
	if !s.cfg.cloud.volumeSet {
		l = DefaultVolumeLimits
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"limits": map[string]any{"rate": []any{}, "absolute": map[string]int{
		"maxTotalVolumes": l.MaxVolumes, "totalVolumesUsed": l.VolumesUsed,
		"maxTotalVolumeGigabytes": l.MaxGigabytes, "totalGigabytesUsed": l.GigabytesUsed,
		"maxTotalSnapshots": 10, "maxTotalBackups": 10, "maxTotalBackupGigabytes": 1000,
	}}})
}

func (s *Server) imageUsage(w http.ResponseWriter, t *token) {
	s.mu.Lock()
	u := s.cfg.cloud.usage
	if !s.cfg.cloud.usageSet {
		var size, count int64
		for _, img := range s.images {
			if img.Owner == t.project.id {
				size += img.Size
				count++
			}
		}
		u = &ImageUsage{SizeLimit: -1, SizeUsed: size >> 20, CountLimit: -1, CountUsed: count}
	}
	s.mu.Unlock()
	if u == nil {
		writeError(w, http.StatusNotFound, "The resource could not be found.")
		return
	}
	entry := func(limit, usage int64) map[string]int64 { return map[string]int64{"limit": limit, "usage": usage} }
	writeJSON(w, http.StatusOK, map[string]any{"usage": map[string]any{
		"image_size_total":      entry(u.SizeLimit, u.SizeUsed),
		"image_count_total":     entry(u.CountLimit, u.CountUsed),
		"image_stage_total":     entry(-1, 0),
		"image_count_uploading": entry(-1, 0),
	}})
}
