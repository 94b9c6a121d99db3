package openstackdouble

import (
	"encoding/json"
	"net/http"
	"strings"
)

const keystoneVersion = "v3.14"

func (s *Server) versionDoc() map[string]any {
	return map[string]any{
		"id":      keystoneVersion,
		"status":  "stable",
		"updated": "2020-04-07T00:00:00Z",
		"links":   []map[string]string{{"rel": "self", "href": s.base + "/v3/"}},
		"media-types": []map[string]string{{
			"base": "application/json",
			"type": "application/vnd.openstack.identity-v3+json",
		}},
	}
}

// identityVersions answers the unversioned discovery gophercloud does when auth_url has no /v3.
func (s *Server) identityVersions(w http.ResponseWriter) {
	writeJSON(w, http.StatusMultipleChoices, map[string]any{
		"versions": map[string]any{"values": []any{s.versionDoc()}},
	})
}

func (s *Server) identityV3Version(w http.ResponseWriter) {
	writeJSON(w, http.StatusOK, map[string]any{"version": s.versionDoc()})
}

type authRef struct {
	ID     *string `json:"id"`
	Name   *string `json:"name"`
	Domain *struct {
		ID   *string `json:"id"`
		Name *string `json:"name"`
	} `json:"domain"`
}

type authUser struct {
	authRef
	Password *string `json:"password"`
}

type authRequest struct {
	Auth struct {
		Identity struct {
			Methods  []string `json:"methods"`
			Password *struct {
				User authUser `json:"user"`
			} `json:"password"`
			ApplicationCredential *struct {
				ID     *string   `json:"id"`
				Name   *string   `json:"name"`
				Secret *string   `json:"secret"`
				User   *authUser `json:"user"`
			} `json:"application_credential"`
		} `json:"identity"`
		Scope json.RawMessage `json:"scope"`
	} `json:"auth"`
}

// domainMatches compares a request's domain reference with a domain name. The double derives a
// domain's ID from its name (Default -> default), like a fresh Keystone does for Default.
func domainMatches(ref *struct {
	ID   *string `json:"id"`
	Name *string `json:"name"`
}, domain string) bool {
	if ref == nil {
		return false
	}
	if ref.ID != nil {
		return *ref.ID == domainID(domain)
	}
	return ref.Name != nil && *ref.Name == domain
}

func domainID(name string) string { return strings.ToLower(name) }

func (s *Server) findUser(ref authRef) *user {
	for _, u := range s.users {
		if ref.ID != nil {
			if *ref.ID == u.id {
				return u
			}
			continue
		}
		if ref.Name != nil && *ref.Name == u.name && domainMatches(ref.Domain, u.domain) {
			return u
		}
	}
	return nil
}

// issueToken implements POST /v3/auth/tokens for the password and application_credential methods.
func (s *Server) issueToken(w http.ResponseWriter, r *http.Request) {
	var req authRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeKeystoneError(w, http.StatusBadRequest, "Bad Request", "Expecting to find auth in request body.")
		return
	}
	id := req.Auth.Identity
	if len(id.Methods) != 1 {
		writeKeystoneError(w, http.StatusUnauthorized, "Unauthorized", "The request you have made requires authentication.")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	t := &token{id: newID() + newID(), method: id.Methods[0], issuedAt: s.now()}
	switch id.Methods[0] {
	case "password":
		if id.Password == nil || id.Password.User.Password == nil {
			writeKeystoneError(w, http.StatusBadRequest, "Bad Request", "Expecting to find password in identity.")
			return
		}
		u := s.findUser(id.Password.User.authRef)
		if u == nil || u.password != *id.Password.User.Password {
			writeKeystoneError(w, http.StatusUnauthorized, "Unauthorized", "The request you have made requires authentication.")
			return
		}
		t.user = u
		p, ok := s.scopeProject(u, req.Auth.Scope)
		if !ok {
			writeKeystoneError(w, http.StatusUnauthorized, "Unauthorized", "The request you have made requires authentication.")
			return
		}
		t.project = p
	case "application_credential":
		ac := id.ApplicationCredential
		if ac == nil || ac.Secret == nil {
			writeKeystoneError(w, http.StatusBadRequest, "Bad Request", "Expecting to find secret in application_credential.")
			return
		}
		if len(req.Auth.Scope) > 0 && string(req.Auth.Scope) != "null" {
			writeKeystoneError(w, http.StatusUnauthorized, "Unauthorized", "Application credentials cannot request a scope.")
			return
		}
		var found *appCred
		for _, c := range s.appCreds {
			switch {
			case ac.ID != nil:
				if *ac.ID == c.id {
					found = c
				}
			case ac.Name != nil && ac.User != nil:
				if *ac.Name == c.name && s.findUser(ac.User.authRef) == c.user {
					found = c
				}
			}
		}
		if found == nil || found.secret != *ac.Secret || !s.appCredUsable(found) {
			writeKeystoneError(w, http.StatusUnauthorized, "Unauthorized", "The request you have made requires authentication.")
			return
		}
		t.user, t.project, t.appCred = found.user, found.project, found
	default:
		writeKeystoneError(w, http.StatusUnauthorized, "Unauthorized", "The request you have made requires authentication.")
		return
	}
	t.expiresAt = t.issuedAt.Add(s.cfg.tokenLifetime)
	if t.appCred != nil && t.appCred.expiresAt != nil && t.appCred.expiresAt.Before(t.expiresAt) {
		// Keystone never lets a token outlive its application credential.
		t.expiresAt = *t.appCred.expiresAt
	}
	s.tokens[t.id] = t

	w.Header().Set("X-Subject-Token", t.id)
	writeJSON(w, http.StatusCreated, map[string]any{"token": s.tokenBody(t)})
}

// scopeProject resolves the requested scope. Without a scope Keystone falls back to the user's
// default project; a project the user has no role on is refused with 401 like Keystone does.
func (s *Server) scopeProject(u *user, raw json.RawMessage) (*project, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		if len(u.projects) == 0 {
			return nil, true
		}
		return u.projects[0], true
	}
	var scope struct {
		Project *authRef `json:"project"`
	}
	if err := json.Unmarshal(raw, &scope); err != nil || scope.Project == nil {
		// Domain, system and trust scopes are not modelled.
		return nil, false
	}
	for _, p := range u.projects {
		if scope.Project.ID != nil {
			if *scope.Project.ID == p.id {
				return p, true
			}
			continue
		}
		if scope.Project.Name != nil && *scope.Project.Name == p.name && domainMatches(scope.Project.Domain, p.domain) {
			return p, true
		}
	}
	return nil, false
}

func (s *Server) tokenBody(t *token) map[string]any {
	body := map[string]any{
		"methods":    []string{t.method},
		"issued_at":  t.issuedAt.Format("2006-01-02T15:04:05.000000Z"),
		"expires_at": t.expiresAt.Format("2006-01-02T15:04:05.000000Z"),
		"audit_ids":  []string{t.id[:22]},
		"user": map[string]any{
			"id":                  t.user.id,
			"name":                t.user.name,
			"domain":              map[string]string{"id": domainID(t.user.domain), "name": t.user.domain},
			"password_expires_at": nil,
		},
	}
	if t.project == nil {
		return body
	}
	body["project"] = map[string]any{
		"id":     t.project.id,
		"name":   t.project.name,
		"domain": map[string]string{"id": domainID(t.project.domain), "name": t.project.domain},
	}
	var roles []map[string]string
	for _, r := range s.tokenRoles(t) {
		roles = append(roles, map[string]string{"id": r + "-role", "name": r})
	}
	body["roles"] = roles
	body["is_domain"] = false
	if t.appCred != nil {
		body["application_credential"] = map[string]any{"id": t.appCred.id, "name": t.appCred.name, "restricted": !t.appCred.unrestricted}
	}
	body["catalog"] = s.catalog(t.project)
	return body
}

// authenticate checks X-Auth-Token the way keystonemiddleware does before a service handles a
// request: unknown, revoked and expired tokens all get 401, which makes gophercloud log in again.
// projectToken is the project-scoped token of a service request, or false after answering 401
// (no valid token) or 403 (an unscoped token, which the service cannot serve).
func (s *Server) projectToken(w http.ResponseWriter, r *http.Request, service string) (*token, bool) {
	t, ok := s.authenticate(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "The request you have made requires authentication.")
		return nil, false
	}
	if t.project == nil {
		writeError(w, http.StatusForbidden, "An unscoped token cannot use "+service+".")
		return nil, false
	}
	return t, true
}

func (s *Server) authenticate(r *http.Request) (*token, bool) {
	id := r.Header.Get("X-Auth-Token")
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[id]
	if !ok || t.revoked || !s.now().Before(t.expiresAt) {
		return nil, false
	}
	return t, true
}

// revokeToken invalidates the request's token; used by the 401 fault so a retry with the same
// token fails too, as it would with a really expired one.
func (s *Server) revokeToken(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[r.Header.Get("X-Auth-Token")]; ok {
		t.revoked = true
	}
}

func writeKeystoneError(w http.ResponseWriter, code int, title, msg string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", "Keystone uri=\"/v3\"")
	}
	writeJSON(w, code, map[string]any{"error": map[string]any{"code": code, "title": title, "message": msg}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes an error the way Glance and keystonemiddleware do: a JSON body with code,
// title and message.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeKeystoneError(w, code, http.StatusText(code), msg)
}
