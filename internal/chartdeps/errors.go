package chartdeps

import (
	"errors"
	"fmt"
)

// The two classes every resolution error falls into (errors.Is). The addon controller turns the
// first into a retry and the second into a condition that asks a person to act.
var (
	// ErrUnavailable: the repository could not be reached or answered with a server error;
	// retrying later may succeed without anyone changing anything.
	ErrUnavailable = errors.New("chart repository unavailable")
	// ErrUnresolvable: the dependency cannot be resolved as declared (no matching version, chart
	// not in the repository, refused credentials, an archive that is not a valid chart, a digest
	// that does not match); the release or the repository must change first.
	ErrUnresolvable = errors.New("chart dependency cannot be resolved")
)

// Causes within ErrUnresolvable that callers and tests match on.
var (
	// ErrNoMatchingVersion: the repository has the chart but no version satisfying the constraint.
	ErrNoMatchingVersion = errors.New("no chart version matches")
	// ErrChartNotFound: the repository does not have the chart (or the version's archive).
	ErrChartNotFound = errors.New("chart not found in repository")
	// ErrDigestMismatch: the fetched archive is not the one the repository's index (or the OCI
	// manifest) promises.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrTooLarge: an index or archive beyond the configured limits.
	ErrTooLarge = errors.New("larger than the limit")
	// ErrUnauthorized: the repository refused the request (missing or wrong credentials).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnsupportedRepository: a repository reference this resolver cannot fetch from (a local
	// repository name like "@stable", file://, an unknown scheme).
	ErrUnsupportedRepository = errors.New("unsupported repository")
	// ErrInvalidIndex: a repository's index.yaml that Helm cannot read.
	ErrInvalidIndex = errors.New("invalid repository index")
	// ErrInvalidChart: the fetched archive or the chart's own Chart.yaml/Chart.lock is invalid.
	ErrInvalidChart = errors.New("invalid chart")
)

// DependencyError names the dependency that failed: the chart declaring it, the dependency and
// its repository, so that a condition message says exactly what to fix.
type DependencyError struct {
	// Parent is the name of the chart whose Chart.yaml declares the dependency.
	Parent string
	// Name and Version are the dependency's name and version (constraint) as declared, or as
	// pinned by Chart.lock.
	Name, Version string
	// Repository is the repository URL as declared, without user information or query (they may
	// hold credentials): it goes into conditions.
	Repository string
	// Err is the cause; it matches ErrUnavailable or ErrUnresolvable.
	Err error
}

func (e *DependencyError) Error() string {
	return fmt.Sprintf("resolving dependency %s %s of chart %s from repository %s: %v", e.Name, e.Version, e.Parent, redact(e.Repository), e.Err)
}

func (e *DependencyError) Unwrap() error { return e.Err }

// unresolvable wraps err so that it matches ErrUnresolvable and cause.
func unresolvable(cause error, format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrUnresolvable, cause, fmt.Sprintf(format, args...))
}

// unavailable wraps err so that it matches ErrUnavailable.
func unavailable(err error) error {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrUnresolvable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
