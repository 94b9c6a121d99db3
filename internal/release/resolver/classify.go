package resolver

import (
	"errors"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
)

// Failure is the class of an error of getting a release, decided once here for every controller
// that needs releases; each kind only maps the class to its own condition reason.
type Failure int

const (
	// FailureTransient is worth retrying with backoff: a registry or network outage, a cache
	// write that failed.
	FailureTransient Failure = iota
	// FailureNotYet is a release that is not there yet (not published, or no ClusterStack of the
	// namespace provides it): look again after a while, since neither is watched.
	FailureNotYet
	// FailureInvalid is a published release that cannot be used: its content does not change
	// under its name, so only a new release helps.
	FailureInvalid
	// FailureSource is a source that cannot be read as configured (no source, a bad spec, refused
	// credentials): a user must fix the ClusterStack or its Secret.
	FailureSource
)

// Classify returns the class of err, an error of Release, ReleaseFor or ClusterStackFor.
func Classify(err error) Failure {
	switch {
	case errors.Is(err, release.ErrInvalid), errors.Is(err, name.ErrInvalidName), errors.Is(err, ErrWrongStack),
		errors.Is(err, source.ErrInvalidArtifact), errors.Is(err, source.ErrTooLarge):
		return FailureInvalid
	case errors.Is(err, ErrNoClusterStack), errors.Is(err, source.ErrNotFound):
		return FailureNotYet
	case errors.Is(err, source.ErrNoSource), errors.Is(err, source.ErrInvalidConfig), errors.Is(err, source.ErrUnauthorized):
		return FailureSource
	}
	return FailureTransient
}
