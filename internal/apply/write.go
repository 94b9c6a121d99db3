package apply

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// crdEstablishTimeout bounds the wait for a CRD applied in this call to be served, so that
// objects of its kind later in the same call can be applied.
const crdEstablishTimeout = 30 * time.Second

// writeDecided writes the objects d decided to write and records the outcome of each in d.res.
func (a *Applier) writeDecided(ctx context.Context, d *decision) {
	outs, versions, errs := a.writeAll(ctx, d.writes)
	for i, p := range d.writes {
		out, err := outs[i], errs[i]
		if err != nil {
			d.res.Failed[p.ref] = err
			continue
		}
		if versions[i] != "" {
			if d.res.Versions == nil {
				d.res.Versions = map[Ref]string{}
			}
			d.res.Versions[p.ref.Key()] = versions[i]
		}
		if out != unchanged {
			d.res.Changed = append(d.res.Changed, p.ref)
		}
		if out == driftRepaired || (out == created && d.inPrevious[p.ref.Key()]) {
			d.res.Drifted = append(d.res.Drifted, p.ref)
		}
	}
}

// writeAll writes every pending object and returns the outcome, the resourceVersion it left (see
// writeOne) and the error of each, by index.
//
// Render order is kept where it matters and nowhere else. Objects that others depend on being
// there first are barriers, written alone and in order: CRDs (their kind must be served before
// its objects are applied), Namespaces (before what lives in them), and admission webhook
// configurations and APIServices (written once what they intercept or serve is in place, as
// Helm's install order puts them last, so a webhook with failurePolicy Fail cannot refuse its own
// chart's objects). Runs of ordinary objects between barriers do not depend on each other and are
// written side by side, parallelRequests at a time: a release's ClusterClass and its templates, or
// an addon's dozen objects, then cost a few round trips instead of one per object.
func (a *Applier) writeAll(ctx context.Context, writes []*pending) ([]outcome, []string, []error) {
	outs := make([]outcome, len(writes))
	versions := make([]string, len(writes))
	errs := make([]error, len(writes))
	writeAt := func(i int) {
		if err := ctx.Err(); err != nil {
			errs[i] = fmt.Errorf("applying %s: %w", writes[i].ref, err)
			return
		}
		outs[i], versions[i], errs[i] = a.writeOne(ctx, writes[i])
	}
	var run []int // ordinary objects since the last barrier
	flush := func() {
		inParallel(len(run), func(j int) { writeAt(run[j]) })
		run = run[:0]
	}
	for i, p := range writes {
		if !isBarrier(p.ref) {
			run = append(run, i)
			continue
		}
		flush()
		writeAt(i)
	}
	flush()
	return outs, versions, errs
}

// isBarrier reports whether writes before and after r must stay on their side of it (see
// writeAll).
func isBarrier(r Ref) bool {
	switch {
	case isCRD(r):
		return true
	case r.Group == "" && r.Kind == "Namespace":
		return true
	case r.Group == "admissionregistration.k8s.io":
		return true
	case r.Group == "apiregistration.k8s.io" && r.Kind == "APIService":
		return true
	}
	return false
}

// writeOne applies a pending object. It returns the resourceVersion the object has after the
// write, as the API server answered it: what a later Versions call finds while nobody writes the
// object. A CRD's is not returned (empty): the API server writes its status once it is
// established, so the answer is stale at once.
func (a *Applier) writeOne(ctx context.Context, p *pending) (outcome, string, error) {
	ref, out := p.ref, p.out
	if p.deferred {
		// Its CRD was applied earlier in this call: now it can be read.
		again, err := a.decideObject(ctx, p.obj, ref, nil)
		if err != nil {
			return unchanged, "", err
		}
		if again.out == unchanged {
			return unchanged, again.version, nil
		}
		out = again.out
	}
	hash := p.obj.GetAnnotations()[HashAnnotation]
	// The answer (the live object) is decoded into p.obj.
	if err := a.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(p.obj), client.FieldOwner(a.FieldManager)); err != nil {
		if apierrors.IsConflict(err) {
			return unchanged, "", conflictError(ref, err)
		}
		if meta.IsNoMatchError(err) {
			return unchanged, "", fmt.Errorf("applying %s: %w", ref, &MissingKindsError{Kinds: []schema.GroupVersionKind{ref.GroupVersionKind()}})
		}
		return unchanged, "", fmt.Errorf("applying %s: %w", ref, err)
	}
	version := p.obj.GetResourceVersion()
	if isCRD(ref) {
		version = ""
		if err := a.waitEstablished(ctx, ref.Name); err != nil {
			return out, "", fmt.Errorf("applying %s: %w", ref, err)
		}
	}
	if a.TrustOwnWrites {
		a.access().wrote(ref, hash, version)
	}
	return out, version, nil
}

// waitEstablished waits until the CRD is served, so that objects of its kind later in the same
// Apply do not fail with "no matches for kind".
func (a *Applier) waitEstablished(ctx context.Context, name string) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, crdEstablishTimeout, true, func(ctx context.Context) (bool, error) {
		crd := &unstructured.Unstructured{}
		crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
		if err := a.Client.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the CRD to be established: %w", err)
	}
	return nil
}

// ConflictError is the error of an object whose apply was refused because fields it sets are
// owned by other field managers. Nothing was forced.
type ConflictError struct {
	Ref Ref
	// Managers are the field managers owning the conflicting fields.
	Managers []string
	// Fields are the conflicting field paths, e.g. ".data.key".
	Fields []string
	Err    error
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("applying %s: fields %s are owned by field manager(s) %s (not forced)",
		e.Ref, strings.Join(e.Fields, ", "), strings.Join(quoteAll(e.Managers), ", "))
}

func (e *ConflictError) Unwrap() error { return e.Err }

var conflictManager = regexp.MustCompile(`conflict with "([^"]*)"`)

func conflictError(ref Ref, err error) error {
	ce := &ConflictError{Ref: ref, Err: err}
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Details != nil {
		managers := map[string]bool{}
		for _, c := range status.Status().Details.Causes {
			if c.Type != metav1.CauseTypeFieldManagerConflict {
				continue
			}
			ce.Fields = append(ce.Fields, c.Field)
			if m := conflictManager.FindStringSubmatch(c.Message); m != nil && !managers[m[1]] {
				managers[m[1]] = true
				ce.Managers = append(ce.Managers, m[1])
			}
		}
	}
	if len(ce.Managers) == 0 { // no structured causes: take the names from the message
		for _, m := range conflictManager.FindAllStringSubmatch(err.Error(), -1) {
			ce.Managers = append(ce.Managers, m[1])
		}
	}
	sort.Strings(ce.Managers)
	return ce
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}
