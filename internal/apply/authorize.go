package apply

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// allowedTTL is how long an "allowed" answer of a SelfSubjectAccessReview is remembered by an
// Applier. Releases of one namespace reconciled side by side, and the backoff retries of a
// release whose apply failed, ask the same questions; remembering the answers for a short time
// saves those round trips. It is short because a permission revoked within it is only noticed by
// the write itself (a per-object Forbidden). Denials are never remembered: permissions granted
// after a denial take effect at the next Apply.
const allowedTTL = 2 * time.Minute

// Permission is one thing the Applier's user must be allowed to do: Verb on Resource of Group,
// in Namespace ("" for cluster-scoped resources, or when a ClusterRole is what is checked).
type Permission struct {
	Group, Resource, Namespace, Verb string
	// Kind is the kind whose objects needed the permission; it is for messages and not part of
	// what is checked.
	Kind string
}

// key is the question asked of the API server.
func (p Permission) key() Permission {
	p.Kind = ""
	return p
}

// ForbiddenError lists the permissions the API server denied the Applier's user. Apply returns
// it before writing or deleting anything; callers match it with errors.As.
type ForbiddenError struct {
	// Denied are the denied permissions, sorted, each once.
	Denied []Permission
}

func (e *ForbiddenError) Error() string {
	var parts []string
	for _, r := range e.Rules() {
		where := "cluster-wide"
		if len(r.Namespaces) > 0 {
			where = "in namespace " + strings.Join(r.Namespaces, ", ")
		}
		parts = append(parts, fmt.Sprintf("%s %s (%s) %s", strings.Join(r.Verbs, ", "), r.resourceString(), strings.Join(r.Kinds, ", "), where))
	}
	return "not allowed to " + strings.Join(parts, "; ")
}

// Rule is the part of a ForbiddenError about one resource: what a ClusterRole (or Role) must
// grant for the Apply to go through.
type Rule struct {
	Group, Resource string
	// Kinds are the kinds stored in Resource that needed it.
	Kinds []string
	// Verbs are the denied verbs, sorted.
	Verbs []string
	// Namespaces are the namespaces the verbs were denied in, sorted; empty for a
	// cluster-scoped resource.
	Namespaces []string
}

func (r Rule) resourceString() string {
	if r.Group == "" {
		return r.Resource
	}
	return r.Resource + "." + r.Group
}

// Rules groups the denied permissions by group and resource, in the order of Denied.
func (e *ForbiddenError) Rules() []Rule {
	var out []Rule
	index := map[schema.GroupResource]int{}
	for _, p := range e.Denied {
		gr := schema.GroupResource{Group: p.Group, Resource: p.Resource}
		i, ok := index[gr]
		if !ok {
			i = len(out)
			index[gr] = i
			out = append(out, Rule{Group: p.Group, Resource: p.Resource})
		}
		r := &out[i]
		r.Kinds = addSorted(r.Kinds, p.Kind)
		r.Verbs = addSorted(r.Verbs, p.Verb)
		r.Namespaces = addSorted(r.Namespaces, p.Namespace)
	}
	return out
}

func addSorted(list []string, v string) []string {
	if v == "" {
		return list
	}
	i := sort.SearchStrings(list, v)
	if i < len(list) && list[i] == v {
		return list
	}
	list = append(list, "")
	copy(list[i+1:], list[i:])
	list[i] = v
	return list
}

// accessCache remembers allowed answers of one Applier (and its copies made with
// WithKeepOnPrune and WithSharing), and with TrustOwnWrites what it wrote.
type accessCache struct {
	mu      sync.Mutex
	allowed map[Permission]time.Time // when the answer expires
	// everythingAllowed is the answer about everything (see allowedEverything), remembered
	// until everythingExpires.
	everythingAllowed bool
	everythingExpires time.Time
	now               func() time.Time
	// written holds, with TrustOwnWrites, the content last written per object key.
	written map[Ref]writtenContent
}

// writtenContent is what a write left: the hash of the content and the resourceVersion the API
// server answered (empty when not known).
type writtenContent struct {
	hash, version string
}

// wrote records that the content with hash was written to ref, leaving version.
func (c *accessCache) wrote(ref Ref, hash, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.written == nil {
		c.written = map[Ref]writtenContent{}
	}
	c.written[ref.Key()] = writtenContent{hash: hash, version: version}
}

// forget drops what was written to ref.
func (c *accessCache) forget(ref Ref) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.written, ref.Key())
}

// wroteSame reports whether the content with hash was the last written to ref, and the
// resourceVersion that write left.
func (c *accessCache) wroteSame(ref Ref, hash string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.written[ref.Key()]
	return w.version, ok && w.hash == hash
}

// cacheInit guards the lazy creation of an Applier's cache, so that the zero value of the
// cache field stays usable and concurrent first calls share one cache.
var cacheInit sync.Mutex

func (a *Applier) access() *accessCache {
	cacheInit.Lock()
	defer cacheInit.Unlock()
	if a.cache == nil {
		a.cache = &accessCache{allowed: map[Permission]time.Time{}, now: time.Now}
	}
	return a.cache
}

func (c *accessCache) isAllowed(p Permission) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.allowed[p]
	if ok && c.now().After(exp) {
		delete(c.allowed, p)
		return false
	}
	return ok
}

func (c *accessCache) allow(p Permission) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.allowed[p] = c.now().Add(allowedTTL)
}

// everything returns the remembered answer about everything, and whether one is remembered.
func (c *accessCache) everything() (allowed, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.everythingExpires.IsZero() || c.now().After(c.everythingExpires) {
		return false, false
	}
	return c.everythingAllowed, true
}

func (c *accessCache) rememberEverything(allowed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.everythingAllowed, c.everythingExpires = allowed, c.now().Add(allowedTTL)
}

var ssarGVK = schema.GroupVersionKind{Group: "authorization.k8s.io", Version: "v1", Kind: "SelfSubjectAccessReview"}

// authorizeDecision checks that the Applier's user may make every write and deletion d decided
// on. An object whose resource cannot be found out fails alone and is dropped from the writes.
func (a *Applier) authorizeDecision(ctx context.Context, d *decision, crds map[schema.GroupVersionKind]crdResource) error {
	needed, denied := a.writePermissions(d, crds)
	forPrunes, err := a.prunePermissions(d.prunes)
	if err != nil {
		return err
	}
	needed = append(needed, forPrunes...)
	if len(needed) == 0 && len(denied) == 0 {
		return nil
	}
	if err := a.authorize(ctx, needed, denied); err != nil {
		return fmt.Errorf("applying objects: %w", err)
	}
	return nil
}

// writePermissions returns what the writes of d need, and what a refused read showed to be
// denied already.
func (a *Applier) writePermissions(d *decision, crds map[schema.GroupVersionKind]crdResource) (needed, denied []Permission) {
	writes := make([]*pending, 0, len(d.writes))
	for _, p := range d.writes {
		verbs := []string{"patch"}
		if p.out == created {
			verbs = append(verbs, "create")
		}
		perms, err := a.permissionsFor(p.ref, verbs, crds)
		if err != nil {
			d.res.Failed[p.ref] = fmt.Errorf("applying %s: %w", p.ref, err)
			continue
		}
		if p.unreadable {
			// The API server refused the read itself: that is part of what to grant.
			denied = append(denied, Permission{Group: perms[0].Group, Resource: perms[0].Resource, Namespace: perms[0].Namespace, Verb: "get", Kind: p.ref.Kind})
		}
		needed = append(needed, perms...)
		writes = append(writes, p)
	}
	d.writes = writes
	return needed, denied
}

// prunePermissions returns what deleting the pruned objects needs.
func (a *Applier) prunePermissions(prunes []prune) ([]Permission, error) {
	var needed []Permission
	for _, p := range prunes {
		if p.keep || p.release {
			continue
		}
		perms, err := a.permissionsFor(p.ref, []string{"delete"}, nil)
		if meta.IsNoMatchError(err) {
			continue // the kind is not served any more: there is nothing to delete
		}
		if err != nil {
			return nil, fmt.Errorf("pruning %s: %w", p.ref, err)
		}
		needed = append(needed, perms...)
	}
	return needed, nil
}

// everything is the question "may this user do anything to anything, cluster-wide?". A workload
// cluster's kubeconfig is usually its admin credential, and then this one answer stands for every
// permission an Apply needs.
var everything = Permission{Group: "*", Resource: "*", Verb: "*"}

// authorize asks the API server whether the Applier's user holds every permission of needed;
// denied are permissions already known to be missing (a read the API server refused). It returns a
// *ForbiddenError naming every denied permission.
//
// It first asks one SelfSubjectAccessReview for everything: allowed, that is the whole answer, so
// an admin credential costs one round trip however many kinds a set holds. Otherwise it asks one
// review per distinct permission not remembered as allowed, side by side, so that the error names
// each missing one.
func (a *Applier) authorize(ctx context.Context, needed, denied []Permission) error {
	cache := a.access()
	var out denials
	for _, p := range denied {
		out.add(p)
	}
	questions := unanswered(needed, out.keys, cache)
	if len(questions) > 0 && len(out.list) == 0 {
		all, err := a.allowedEverything(ctx, cache)
		if err != nil {
			return err
		}
		if all {
			return nil
		}
	}
	refused, err := a.ask(ctx, questions, cache)
	if err != nil {
		return err
	}
	for _, p := range needed {
		// A refused question can stand for several kinds (one resource, one verb): name each.
		if k := p.key(); out.keys[k] || refused[k] {
			out.add(p)
		}
	}
	if len(out.list) == 0 {
		return nil
	}
	sortPermissions(out.list)
	return &ForbiddenError{Denied: out.list}
}

// denials collects denied permissions, each once, in the order they are found.
type denials struct {
	keys map[Permission]bool // the questions (Permission.key) denied
	seen map[Permission]bool
	list []Permission
}

func (d *denials) add(p Permission) {
	if d.keys == nil {
		d.keys, d.seen = map[Permission]bool{}, map[Permission]bool{}
	}
	d.keys[p.key()] = true
	if !d.seen[p] {
		d.seen[p] = true
		d.list = append(d.list, p)
	}
}

// unanswered returns the distinct questions of needed that are neither denied already nor
// remembered as allowed.
func unanswered(needed []Permission, denied map[Permission]bool, cache *accessCache) []Permission {
	asked := map[Permission]bool{}
	var questions []Permission
	for _, p := range needed {
		k := p.key()
		if denied[k] || asked[k] {
			continue
		}
		asked[k] = true
		if !cache.isAllowed(k) {
			questions = append(questions, k)
		}
	}
	return questions
}

// allowedEverything asks (or remembers) whether the user may do everything. Unlike other
// denials, a denial of everything is remembered as long as an allowed answer: it only means that
// the questions are asked one by one, so permissions granted meanwhile still take effect at the
// next Apply. When the user may not ask at all, the per-permission questions find that out.
func (a *Applier) allowedEverything(ctx context.Context, cache *accessCache) (bool, error) {
	if allowed, known := cache.everything(); known {
		return allowed, nil
	}
	allowed, err := a.review(ctx, everything)
	if err != nil {
		if cannotAsk(err) {
			return false, nil
		}
		return false, fmt.Errorf("asking whether everything is allowed: %w", err)
	}
	cache.rememberEverything(allowed)
	return allowed, nil
}

// ask asks the questions side by side (a first apply into a namespace needs create and patch for
// each kind, and one round trip after another was most of its time), remembers the allowed
// answers and returns the refused questions. When the user may not ask at all, nothing counts as
// refused: the writes are attempted and their own Forbidden errors reported per object.
func (a *Applier) ask(ctx context.Context, questions []Permission, cache *accessCache) (map[Permission]bool, error) {
	answers := make([]struct {
		allowed bool
		err     error
	}, len(questions))
	inParallel(len(questions), func(i int) {
		answers[i].allowed, answers[i].err = a.review(ctx, questions[i])
	})
	refused := map[Permission]bool{}
	for i, k := range questions {
		if err := answers[i].err; err != nil {
			if cannotAsk(err) {
				log.FromContext(ctx).V(4).Info("Cannot ask SelfSubjectAccessReviews, writing without checking", "Error", err.Error())
				return nil, nil
			}
			return nil, fmt.Errorf("asking whether %s on %s is allowed: %w", k.Verb, Rule{Group: k.Group, Resource: k.Resource}.resourceString(), err)
		}
		if answers[i].allowed {
			cache.allow(k)
		} else {
			refused[k] = true
		}
	}
	return refused, nil
}

// sortPermissions sorts by group, resource, namespace, verb and kind, so that a ForbiddenError
// reads the same for the same denials.
func sortPermissions(ps []Permission) {
	sort.Slice(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		if a.Resource != b.Resource {
			return a.Resource < b.Resource
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Verb != b.Verb {
			return a.Verb < b.Verb
		}
		return a.Kind < b.Kind
	})
}

// review asks one SelfSubjectAccessReview. It is sent unstructured so that it works with any
// client scheme (workload cluster clients may carry small ones).
func (a *Applier) review(ctx context.Context, p Permission) (bool, error) {
	attrs := map[string]any{"verb": p.Verb, "group": p.Group, "resource": p.Resource}
	if p.Namespace != "" {
		attrs["namespace"] = p.Namespace
	}
	ssar := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{"resourceAttributes": attrs},
	}}
	ssar.SetGroupVersionKind(ssarGVK)
	if err := a.Client.Create(ctx, ssar); err != nil {
		return false, err
	}
	allowed, _, _ := unstructured.NestedBool(ssar.Object, "status", "allowed")
	return allowed, nil
}

// permissionsFor returns what writing ref needs: patch (server-side apply) and, when the object
// does not exist, create (the API server authorises an apply that creates as a create too).
// crds holds the resources defined by CRDs of the same Apply call, not served yet.
func (a *Applier) permissionsFor(ref Ref, verbs []string, crds map[schema.GroupVersionKind]crdResource) ([]Permission, error) {
	resource, namespaced, err := a.resourceOf(ref.GroupVersionKind(), crds)
	if err != nil {
		return nil, err
	}
	ns := ""
	if namespaced {
		ns = ref.Namespace
	}
	out := make([]Permission, len(verbs))
	for i, v := range verbs {
		out[i] = Permission{Group: ref.Group, Resource: resource, Namespace: ns, Verb: v, Kind: ref.Kind}
	}
	return out, nil
}

func (a *Applier) resourceOf(gvk schema.GroupVersionKind, crds map[schema.GroupVersionKind]crdResource) (string, bool, error) {
	m, err := a.Client.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	if err == nil {
		return m.Resource.Resource, m.Scope.Name() == meta.RESTScopeNameNamespace, nil
	}
	if c, ok := crds[gvk]; ok && meta.IsNoMatchError(err) {
		return c.resource, c.namespaced, nil
	}
	return "", false, fmt.Errorf("mapping kind %s to its resource: %w", gvkString(gvk), err)
}

// cannotAsk reports whether err means the API server does not let this user ask
// SelfSubjectAccessReviews at all (an API server without the authorization API, or RBAC that
// took the right from system:basic-user); the writes are then attempted as before and their own
// Forbidden errors reported per object.
func cannotAsk(err error) bool {
	return apierrors.IsForbidden(err) || apierrors.IsNotFound(err) || meta.IsNoMatchError(err) || apierrors.IsMethodNotSupported(err)
}
