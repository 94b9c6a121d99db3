package openstackdouble

import (
	"io"
	"net"
	"net/http"
	"path"
	"strconv"
	"time"
)

// ImportOutcome is what a web-download import started by a faulted call does.
type ImportOutcome int

const (
	// ImportNormal fetches the URL and ends active or, if the fetch fails, failed.
	ImportNormal ImportOutcome = iota
	// ImportFails ends the import as failed without fetching: the image goes back to queued with
	// os_glance_failed_import set, which is all a real Glance reports.
	ImportFails
	// ImportHangs leaves the image importing until the server closes.
	ImportHangs
)

// Fault describes how to answer matching calls instead of (or before) handling them normally.
// A zero field does not match or do anything, so Fault{Method: "PUT", Status: 503} answers every
// PUT with 503.
type Fault struct {
	// Method matches the HTTP method; empty matches any.
	Method string
	// Path matches the endpoint template (e.g. "/v2/images/{id}/file", see the Call constants) or,
	// as a path.Match pattern, the request path below the Glance catalog URL (e.g.
	// "/v2/images/<id>/file") or below the server root for Keystone. Empty matches any.
	Path string
	// Times is how many matching calls the fault affects; 0 means all of them.
	Times int

	// Delay is added before the call is answered (by Status, ResetConnection or normally).
	Delay time.Duration
	// Hang never answers: the call is held until the client gives up (closes the connection) or
	// the server closes, like a cloud whose API process is stuck. Clients without a timeout
	// hang with it.
	Hang bool
	// AfterBytes makes an upload (PUT /v2/images/{id}/file) take this many bytes of the data
	// first, with the image saving, and only then apply the fault: Hang then stops reading
	// mid-transfer and leaves the image saving (a stuck Glance; only Close ends it), Status (e.g.
	// 413 for a storage quota) and ResetConnection put the image back to queued, as Glance does
	// when an upload fails. Other endpoints ignore faults with AfterBytes.
	AfterBytes int64
	// Status answers with this HTTP status. A 401 also revokes the caller's token, as a really
	// expired token would be, so a client must log in again.
	Status int
	// RetryAfter is sent as Retry-After (whole seconds, at least 1) with a Status of 429 or 503;
	// 1s when zero.
	RetryAfter time.Duration
	// ResetConnection closes the connection without an answer (a TCP reset). Note that net/http
	// silently retries an idempotent request (GET, PUT with a rewindable body, DELETE) once when a
	// reused connection is reset, so a fault with Times 1 may not reach the caller; POST does.
	ResetConnection bool
	// Import changes what a POST /v2/images/{id}/import started by this call does. The call itself
	// is answered 202 as usual unless Status or ResetConnection is set.
	Import ImportOutcome
}

type faultEntry struct {
	f         Fault
	remaining int
	hits      int
}

// InjectedFault is a handle on a registered fault.
type InjectedFault struct {
	s *Server
	e *faultEntry
}

// InjectFault registers f. Faults are tried in the order they were registered and the first
// matching one with calls left applies.
func (s *Server) InjectFault(f Fault) *InjectedFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := &faultEntry{f: f, remaining: f.Times}
	s.faults = append(s.faults, e)
	return &InjectedFault{s: s, e: e}
}

// ClearFaults removes all faults.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Hits is how many calls the fault has affected, also after it was removed.
func (h *InjectedFault) Hits() int {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.e.hits
}

// Remove unregisters the fault.
func (h *InjectedFault) Remove() {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	for i, e := range h.s.faults {
		if e == h.e {
			h.s.faults = append(h.s.faults[:i], h.s.faults[i+1:]...)
			return
		}
	}
}

func (e *faultEntry) matches(r *http.Request, rt route) bool {
	if e.f.Times > 0 && e.remaining <= 0 {
		return false
	}
	if e.f.Method != "" && e.f.Method != r.Method {
		return false
	}
	if e.f.Path == "" || e.f.Path == rt.template {
		return true
	}
	ok, err := path.Match(e.f.Path, rt.path)
	return err == nil && ok
}

// applyFault answers the request if a fault says so and reports whether it did; the matched fault
// is returned for handlers that act on it later (imports).
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, rt route) (Fault, bool) {
	s.mu.Lock()
	var f Fault
	found := false
	for _, e := range s.faults {
		if e.matches(r, rt) {
			e.remaining--
			e.hits++
			f, found = e.f, true
			break
		}
	}
	s.mu.Unlock()
	if !found {
		return Fault{}, false
	}
	if f.AfterBytes > 0 {
		// Applied by the upload handler once it has the bytes.
		return f, false
	}
	if (f.Hang || f.Delay > 0) && rt.template != "/v2/images/{id}/file" && r.Body != nil {
		// Read the (small, JSON) body first: net/http notices a client that gives up only once
		// the body has been read, and a held call must end when its client leaves.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	}
	return f, s.act(w, r, f)
}

// act carries out a fault's delay and answer; it reports whether it answered the call.
func (s *Server) act(w http.ResponseWriter, r *http.Request, f Fault) bool {
	if f.Hang {
		select {
		case <-r.Context().Done():
		case <-s.ctx.Done():
		}
		return true
	}
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		case <-s.ctx.Done():
			t.Stop()
			return true
		}
	}
	switch {
	case f.ResetConnection:
		resetConnection(w)
		return true
	case f.Status == http.StatusUnauthorized:
		s.revokeToken(r)
		writeError(w, f.Status, "The request you have made requires authentication.")
		return true
	case f.Status == http.StatusTooManyRequests || f.Status == http.StatusServiceUnavailable:
		secs := int((f.RetryAfter + time.Second - 1) / time.Second)
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(w, f.Status, "Injected fault.")
		return true
	case f.Status == http.StatusRequestEntityTooLarge:
		writeError(w, f.Status, "Denying attempt to upload image because it exceeds the quota.")
		return true
	case f.Status != 0:
		writeError(w, f.Status, "Injected fault.")
		return true
	}
	return false
}

// resetConnection drops the connection with SO_LINGER 0, so the client sees a reset rather than
// a clean EOF.
func resetConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	raw := conn
	if nc, ok := conn.(interface{ NetConn() net.Conn }); ok {
		raw = nc.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = raw.Close()
}
