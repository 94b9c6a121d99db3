package openstackdouble

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Endpoint keys of Keystone's application credentials, for Calls and Fault.Path.
const (
	CallCreateApplicationCredential = "POST /v3/users/{user_id}/application_credentials"
	CallListApplicationCredentials  = "GET /v3/users/{user_id}/application_credentials"
	CallGetApplicationCredential    = "GET /v3/users/{user_id}/application_credentials/{id}"
	CallDeleteApplicationCredential = "DELETE /v3/users/{user_id}/application_credentials/{id}"
)

// ProjectRoles are the roles every user has on each of its projects: what Keystone's default
// policy gives a project member (reader is implied by member), plus the Octavia role the cloud
// controller manager needs on clouds that enforce Octavia's RBAC.
var ProjectRoles = []string{"member", "reader", "load-balancer_member"}

// keystoneTime is the timestamp format of Keystone's application credentials (no zone, UTC),
// which gophercloud writes and reads as RFC3339MilliNoZ.
const keystoneTime = "2006-01-02T15:04:05.000000"

// ApplicationCredentialInfo is what the double holds about an application credential, for tests
// to assert on (the secret is left out: Keystone shows it once, at creation).
type ApplicationCredentialInfo struct {
	ID, Name, Description string
	// User and Project are names.
	User, Project string
	Roles         []string
	// ExpiresAt is nil for a credential that does not expire.
	ExpiresAt    *time.Time
	Unrestricted bool
}

// ApplicationCredentials lists every application credential of every user.
func (s *Server) ApplicationCredentials() []ApplicationCredentialInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ApplicationCredentialInfo, 0, len(s.appCreds))
	for _, c := range s.appCreds {
		out = append(out, ApplicationCredentialInfo{
			ID: c.id, Name: c.name, Description: c.description, User: c.user.name, Project: c.project.name,
			Roles: slices.Clone(c.roles), ExpiresAt: c.expiresAt, Unrestricted: c.unrestricted,
		})
	}
	return out
}

// appCredRoute splits /v3/users/{user_id}/application_credentials[/{id}] into its template,
// user ID and credential ID; ok is false for any other path.
func appCredRoute(p string) (template, userID, id string, ok bool) {
	seg := strings.Split(strings.Trim(p, "/"), "/")
	if len(seg) < 4 || seg[0] != "v3" || seg[1] != "users" || seg[3] != "application_credentials" {
		return "", "", "", false
	}
	switch len(seg) {
	case 4:
		return "/v3/users/{user_id}/application_credentials", seg[2], "", true
	case 5:
		return "/v3/users/{user_id}/application_credentials/{id}", seg[2], seg[4], true
	}
	return "", "", "", false
}

// serveAppCreds implements Keystone's application credential API of one user, with Keystone's
// rules: only the user itself manages its credentials; a token from a restricted application
// credential cannot create or delete credentials; the roles must be ones the user has on the
// token's project; names are unique per user; deleting a credential revokes its tokens.
func (s *Server) serveAppCreds(w http.ResponseWriter, r *http.Request, rt route) {
	_, userID, id, _ := appCredRoute(rt.path)
	t, ok := s.authenticate(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "The request you have made requires authentication.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.user.id != userID {
		writeError(w, http.StatusForbidden, "You are not authorized to perform the requested action: identity:application_credential.")
		return
	}
	restricted := t.appCred != nil && !t.appCred.unrestricted
	switch r.Method + " " + rt.template {
	case CallCreateApplicationCredential:
		if restricted {
			writeError(w, http.StatusForbidden, "Using method 'application_credential' is not allowed for managing additional application credentials.")
			return
		}
		s.createAppCred(w, r, t)
	case CallListApplicationCredentials:
		name := r.URL.Query().Get("name")
		list := []map[string]any{}
		for _, c := range s.appCreds {
			if c.user == t.user && (name == "" || c.name == name) {
				list = append(list, s.appCredBody(c, false))
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"application_credentials": list, "links": map[string]any{"next": nil, "previous": nil, "self": s.base + rt.path}})
	case CallGetApplicationCredential:
		c := s.findAppCred(t.user, id)
		if c == nil {
			writeError(w, http.StatusNotFound, "Could not find application credential: "+id+".")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"application_credential": s.appCredBody(c, false)})
	case CallDeleteApplicationCredential:
		if restricted {
			writeError(w, http.StatusForbidden, "Using method 'application_credential' is not allowed for managing additional application credentials.")
			return
		}
		c := s.findAppCred(t.user, id)
		if c == nil {
			writeError(w, http.StatusNotFound, "Could not find application credential: "+id+".")
			return
		}
		s.appCreds = slices.DeleteFunc(s.appCreds, func(x *appCred) bool { return x == c })
		for _, tok := range s.tokens {
			if tok.appCred == c {
				tok.revoked = true
			}
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, http.StatusMethodNotAllowed, "The method is not allowed for the requested URL.")
	}
}

func (s *Server) findAppCred(u *user, id string) *appCred {
	for _, c := range s.appCreds {
		if c.user == u && c.id == id {
			return c
		}
	}
	return nil
}

// createAppCred runs with s.mu held.
func (s *Server) createAppCred(w http.ResponseWriter, r *http.Request, t *token) {
	var req struct {
		ApplicationCredential struct {
			Name         string  `json:"name"`
			Description  string  `json:"description"`
			Secret       string  `json:"secret"`
			Unrestricted bool    `json:"unrestricted"`
			ExpiresAt    *string `json:"expires_at"`
			Roles        []struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"roles"`
		} `json:"application_credential"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil || req.ApplicationCredential.Name == "" {
		writeError(w, http.StatusBadRequest, "Invalid input for field 'name': the application credential needs a name.")
		return
	}
	in := req.ApplicationCredential
	if t.project == nil {
		writeError(w, http.StatusBadRequest, "An application credential needs a project-scoped token.")
		return
	}
	for _, c := range s.appCreds {
		if c.user == t.user && c.name == in.Name {
			writeError(w, http.StatusConflict, "Duplicate entry found with name "+in.Name+".")
			return
		}
	}
	c := &appCred{id: newID(), name: in.Name, description: in.Description, secret: in.Secret, user: t.user, project: t.project, unrestricted: in.Unrestricted}
	if c.secret == "" {
		c.secret = newID() + newID()
	}
	if in.ExpiresAt != nil {
		// Any number of fractional digits: gophercloud sends RFC3339MilliNoZ, which drops
		// trailing zeros.
		at, err := time.Parse("2006-01-02T15:04:05.999999999", strings.TrimSuffix(*in.ExpiresAt, "Z"))
		if err != nil {
			writeError(w, http.StatusBadRequest, "Invalid input for field 'expires_at'.")
			return
		}
		if !at.After(s.now()) {
			writeError(w, http.StatusBadRequest, "The expiration time of an application credential must be in the future.")
			return
		}
		c.expiresAt = &at
	}
	if len(in.Roles) == 0 {
		// Keystone's default: every role of the token.
		c.roles = s.tokenRoles(t)
	}
	for _, role := range in.Roles {
		name := role.Name
		if name == "" {
			name = strings.TrimSuffix(role.ID, "-role")
		}
		if !slices.Contains(s.tokenRoles(t), name) {
			writeError(w, http.StatusForbidden, "Cannot create an application credential with unassigned role "+name+".")
			return
		}
		if !slices.Contains(c.roles, name) {
			c.roles = append(c.roles, name)
		}
	}
	s.appCreds = append(s.appCreds, c)
	writeJSON(w, http.StatusCreated, map[string]any{"application_credential": s.appCredBody(c, true)})
}

// tokenRoles are the roles a token carries: an application credential's own, else the user's
// roles on the project.
func (s *Server) tokenRoles(t *token) []string {
	if t.appCred != nil && t.appCred.roles != nil {
		return slices.Clone(t.appCred.roles)
	}
	return slices.Clone(ProjectRoles)
}

func (s *Server) appCredBody(c *appCred, withSecret bool) map[string]any {
	roles := make([]map[string]string, 0, len(c.roles))
	for _, r := range c.roles {
		roles = append(roles, map[string]string{"id": r + "-role", "name": r, "domain_id": ""})
	}
	body := map[string]any{
		"id": c.id, "name": c.name, "description": c.description, "project_id": c.project.id,
		"unrestricted": c.unrestricted, "roles": roles, "expires_at": nil, "access_rules": []any{},
		"links": map[string]string{"self": s.base + "/v3/users/" + c.user.id + "/application_credentials/" + c.id},
	}
	if c.expiresAt != nil {
		body["expires_at"] = c.expiresAt.UTC().Format(keystoneTime)
	}
	if withSecret {
		body["secret"] = c.secret
	}
	return body
}

// appCredUsable says whether a credential may log in now: Keystone refuses expired ones.
func (s *Server) appCredUsable(c *appCred) bool {
	return c.expiresAt == nil || s.now().Before(*c.expiresAt)
}
