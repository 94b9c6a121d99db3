package metrics

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// The review answers are reused for as long as controller-runtime's
// filters.WithAuthenticationAndAuthorization reuses them: a token's review for a minute, an
// allowed scrape for five, a denied one for thirty seconds.
const (
	tokenTTL    = time.Minute
	allowTTL    = 5 * time.Minute
	denyTTL     = 30 * time.Second
	reviewLimit = 10 * time.Second
	// maxCached bounds each answer cache: a scraper uses one token, and random tokens sprayed at
	// the endpoint must not grow the manager's memory.
	maxCached = 256
)

// authFilter answers only requests whose bearer token the API server authenticates (a
// TokenReview) and authorises for the request's verb on its path (a SubjectAccessReview of a
// non-resource URL), like controller-runtime's filters.WithAuthenticationAndAuthorization.
//
// Why not that filter: it builds on k8s.io/apiserver's delegating authenticator and authorizer,
// which link the API server's authentication stack (gRPC, OpenTelemetry, component-base metrics,
// about 100 packages with init work) into the manager: 6 MB of the binary and 3.5 MiB of its
// resident memory in every replica, for two API calls. One difference: a token the API server
// does not accept is answered 401 here, where the library answers 500 when the review carries an
// error text. Reviews are not retried: a failed one is answered 500 and the next scrape asks again.
func authFilter(cfg *rest.Config, httpClient *http.Client) (metricsserver.Filter, error) {
	authn, err := authenticationclient.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("creating the TokenReview client: %w", err)
	}
	authz, err := authorizationclient.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("creating the SubjectAccessReview client: %w", err)
	}
	a := &reviewer{tokens: authn.TokenReviews(), access: authz.SubjectAccessReviews(), now: time.Now}
	return func(log logr.Logger, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			a.serve(log, next, w, req)
		}), nil
	}, nil
}

type reviewer struct {
	tokens authenticationclient.TokenReviewInterface
	access authorizationclient.SubjectAccessReviewInterface
	now    func() time.Time

	users     answers[authenticationv1.UserInfo] // by the token's SHA-256; Username "" means rejected
	decisions answers[bool]                      // by user and request
}

func (a *reviewer) serve(log logr.Logger, next http.Handler, w http.ResponseWriter, req *http.Request) {
	token, ok := bearerToken(req)
	if !ok {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	user, err := a.authenticate(req.Context(), token)
	if err != nil {
		log.Error(err, "Authentication failed")
		http.Error(w, "Authentication failed", http.StatusInternalServerError)
		return
	}
	if user.Username == "" {
		log.V(4).Info("Authentication failed")
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	verb := strings.ToLower(req.Method)
	allowed, err := a.authorize(req.Context(), user, verb, req.URL.Path)
	if err != nil {
		log.Error(err, "Authorization failed", "user", user.Username)
		http.Error(w, fmt.Sprintf("Authorization for user %s failed", user.Username), http.StatusInternalServerError)
		return
	}
	if !allowed {
		log.V(4).Info("Authorization denied", "user", user.Username, "verb", verb, "path", req.URL.Path)
		http.Error(w, fmt.Sprintf("Authorization denied for user %s", user.Username), http.StatusForbidden)
		return
	}
	next.ServeHTTP(w, req)
}

// bearerToken returns the token of an `Authorization: Bearer <token>` header.
func bearerToken(req *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(req.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// authenticate returns the user of token, with an empty Username when the API server does not
// accept it.
func (a *reviewer) authenticate(ctx context.Context, token string) (authenticationv1.UserInfo, error) {
	key := fmt.Sprintf("%x", sha256.Sum256([]byte(token))) // the token itself is never kept
	if u, ok := a.users.get(key, a.now()); ok {
		return u, nil
	}
	ctx, cancel := context.WithTimeout(ctx, reviewLimit)
	defer cancel()
	review, err := a.tokens.Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return authenticationv1.UserInfo{}, fmt.Errorf("reviewing the bearer token: %w", err)
	}
	var user authenticationv1.UserInfo
	if review.Status.Authenticated {
		user = review.Status.User
	}
	a.users.put(key, user, a.now(), tokenTTL)
	return user, nil
}

// authorize says whether the API server allows user verb on the non-resource URL path.
func (a *reviewer) authorize(ctx context.Context, user authenticationv1.UserInfo, verb, path string) (bool, error) {
	extra := map[string]authorizationv1.ExtraValue{}
	var extraKeys []string
	for k, v := range user.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
		extraKeys = append(extraKeys, fmt.Sprintf("%q=%q", k, []string(v)))
	}
	slices.Sort(extraKeys)
	key := fmt.Sprintf("%q %q %q %q %s %s", user.Username, user.UID, user.Groups, extraKeys, verb, path)
	if allowed, ok := a.decisions.get(key, a.now()); ok {
		return allowed, nil
	}
	ctx, cancel := context.WithTimeout(ctx, reviewLimit)
	defer cancel()
	review, err := a.access.Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, UID: user.UID, Groups: user.Groups, Extra: extra,
		NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: path, Verb: verb},
	}}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("reviewing access to %s %s: %w", verb, path, err)
	}
	ttl := denyTTL
	if review.Status.Allowed {
		ttl = allowTTL
	}
	a.decisions.put(key, review.Status.Allowed, a.now(), ttl)
	return review.Status.Allowed, nil
}

// answers caches review answers until they expire, at most maxCached of them.
type answers[T any] struct {
	mu      sync.Mutex
	entries map[string]answer[T]
}

type answer[T any] struct {
	value   T
	expires time.Time
}

func (c *answers[T]) get(key string, now time.Time) (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !now.Before(e.expires) {
		var zero T
		return zero, false
	}
	return e.value, true
}

// put keeps value for ttl from now; when the cache is full of unexpired answers, it is not kept.
func (c *answers[T]) put(key string, value T, now time.Time, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]answer[T]{}
	}
	if len(c.entries) >= maxCached {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxCached {
			return
		}
	}
	c.entries[key] = answer[T]{value: value, expires: now.Add(ttl)}
}
