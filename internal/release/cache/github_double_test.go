package cache_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// ghDouble is a minimal GitHub releases API; the source package's tests
// cover pagination, redirects and rate limits in depth.
type ghDouble struct {
	srv      *httptest.Server
	mu       sync.Mutex
	releases []map[string]any
	files    map[string][]byte
}

func newGitHub(t *testing.T) *ghDouble {
	g := &ghDouble{files: map[string][]byte{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /repos/o/r/releases", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		defer g.mu.Unlock()
		_ = json.NewEncoder(w).Encode(g.releases)
	})
	mux.HandleFunc("GET /repos/o/r/releases/tags/{tag}", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, rel := range g.releases {
			if rel["tag_name"] == r.PathValue("tag") {
				_ = json.NewEncoder(w).Encode(rel)
				return
			}
		}
		http.NotFound(w, r)
	})
	mux.HandleFunc("GET /repos/o/r/releases/assets/{id}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/download/"+r.PathValue("id"), http.StatusFound)
	})
	mux.HandleFunc("GET /download/{id}", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		data, ok := g.files[r.PathValue("id")]
		g.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(data)
	})
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

func (g *ghDouble) add(t *testing.T, tag, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var assets []map[string]any
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprint(len(g.files) + 1)
		g.files[id] = data
		assets = append(assets, map[string]any{"id": len(g.files), "name": e.Name(), "size": len(data), "url": g.srv.URL + "/repos/o/r/releases/assets/" + id})
	}
	g.releases = append(g.releases, map[string]any{"tag_name": tag, "assets": assets})
}
