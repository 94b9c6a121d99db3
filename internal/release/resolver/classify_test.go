package resolver

import (
	"errors"
	"fmt"
	"testing"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
)

func TestClassify(t *testing.T) {
	for name, tc := range map[string]struct {
		err  error
		want Failure
	}{
		"invalid release":   {err: &release.InvalidError{Err: release.ErrMissingFile}, want: FailureInvalid},
		"invalid name":      {err: fmt.Errorf("parsing: %w", name.ErrInvalidName), want: FailureInvalid},
		"wrong stack":       {err: ErrWrongStack, want: FailureInvalid},
		"not an artifact":   {err: source.ErrInvalidArtifact, want: FailureInvalid},
		"too large":         {err: source.ErrTooLarge, want: FailureInvalid},
		"no ClusterStack":   {err: ErrNoClusterStack, want: FailureNotYet},
		"not published":     {err: fmt.Errorf("fetching: %w", source.ErrNotFound), want: FailureNotYet},
		"no source":         {err: source.ErrNoSource, want: FailureSource},
		"bad source config": {err: source.ErrInvalidConfig, want: FailureSource},
		"unauthorized":      {err: source.ErrUnauthorized, want: FailureSource},
		"registry down":     {err: errors.New("connection refused"), want: FailureTransient},
	} {
		t.Run(name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Errorf("Classify(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}
