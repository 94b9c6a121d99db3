// Package outcome is how a reconcile step says why it stopped short of done, so that one place
// per kind (its status function) turns that into conditions and the reconcile result, instead of
// every step setting conditions and picking requeue intervals on the side (Flux's
// Stalling/Waiting errors are the model).
//
// A step returns nil (done), or an error that is one of:
//   - *Stalled: only a user can help (a bad release, a refused credential, a missing CRD); the
//     object reports Stalled and is not retried with backoff; RetryAfter > 0 looks again after
//     that long, for causes that cannot be watched (Secrets, RBAC, quotas, CRDs).
//   - *Waiting: something else has to happen first (a provider object, an image, a Cluster); the
//     object reports Reconciling and is looked at again after RequeueAfter (zero: when a watch
//     event brings it back).
//   - *Transient: a failure worth retrying with controller-runtime's backoff, with a reason the
//     object reports while it retries.
//   - any other error: transient, retried with backoff, reported by no condition (a conflict on
//     a write, a cache not synced: no news for a user).
package outcome

import (
	"errors"
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Stalled means only a user can help.
type Stalled struct {
	// Reason is the condition reason, a documented constant.
	Reason string
	// Message says what is wrong and what to fix.
	Message string
	// RetryAfter, when positive, looks again after that long even without a watch event.
	RetryAfter time.Duration
}

func (s *Stalled) Error() string { return s.Message }

// Waiting means the object is progressing and waits for something else.
type Waiting struct {
	// Reason is the condition reason, a documented constant.
	Reason string
	// Message says what is waited for.
	Message string
	// RequeueAfter, when positive, looks again after that long; zero waits for a watch event.
	RequeueAfter time.Duration
}

func (w *Waiting) Error() string { return w.Message }

// Transient is a failure that backoff retries, with the reason to report meanwhile.
type Transient struct {
	// Reason is the condition reason, a documented constant.
	Reason string
	// Err is the failure; its text is the message.
	Err error
}

func (t *Transient) Error() string { return t.Err.Error() }
func (t *Transient) Unwrap() error { return t.Err }

// Stall returns a *Stalled with a formatted message.
func Stall(reason, format string, args ...any) *Stalled {
	return &Stalled{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// StallRetry returns a *Stalled that is looked at again after retryAfter.
func StallRetry(reason string, retryAfter time.Duration, format string, args ...any) *Stalled {
	return &Stalled{Reason: reason, Message: fmt.Sprintf(format, args...), RetryAfter: retryAfter}
}

// Wait returns a *Waiting with a formatted message, looked at again after requeueAfter (zero:
// on the next watch event).
func Wait(reason string, requeueAfter time.Duration, format string, args ...any) *Waiting {
	return &Waiting{Reason: reason, Message: fmt.Sprintf(format, args...), RequeueAfter: requeueAfter}
}

// Retry returns err as a *Transient with reason; nil stays nil.
func Retry(reason string, err error) error {
	if err == nil {
		return nil
	}
	return &Transient{Reason: reason, Err: err}
}

// AsStalled returns the *Stalled in err's chain.
func AsStalled(err error) (*Stalled, bool) {
	var s *Stalled
	return s, errors.As(err, &s)
}

// AsWaiting returns the *Waiting in err's chain.
func AsWaiting(err error) (*Waiting, bool) {
	var w *Waiting
	return w, errors.As(err, &w)
}

// AsTransient returns the *Transient in err's chain.
func AsTransient(err error) (*Transient, bool) {
	var t *Transient
	return t, errors.As(err, &t)
}

// Result maps a step's result and error to what controller-runtime gets: a stall or a wait is no
// error (backoff would only repeat what cannot change by itself), with the requeue it asks for;
// the earlier of res's and the outcome's requeue wins. Every other error is returned for backoff.
func Result(res ctrl.Result, err error) (ctrl.Result, error) {
	if err == nil {
		return res, nil
	}
	if s, ok := AsStalled(err); ok {
		return ctrl.Result{RequeueAfter: earliest(res.RequeueAfter, s.RetryAfter)}, nil
	}
	if w, ok := AsWaiting(err); ok {
		return ctrl.Result{RequeueAfter: earliest(res.RequeueAfter, w.RequeueAfter)}, nil
	}
	return ctrl.Result{}, err
}

// Settled reports whether err describes the object's current spec for good: done, stalled or
// waiting. Only then is status.observedGeneration recorded (as Cluster API does): a transient failure
// says nothing yet about the spec that was read.
func Settled(err error) bool {
	if err == nil {
		return true
	}
	_, stalled := AsStalled(err)
	_, waiting := AsWaiting(err)
	return stalled || waiting
}

// earliest returns the smaller positive duration; zero means none.
func earliest(a, b time.Duration) time.Duration {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	case a < b:
		return a
	}
	return b
}
