// Package api_test checks the operator's CRDs against a real API server: every CEL rule refuses
// bad input with its message and accepts good input, defaults apply, and manifests written for the
// SCS reference operators apply unchanged.
package api_test

import (
	"testing"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// env is shared by every test of the package: one API server per package, not per test.
var env *testenv.Environment

func TestMain(m *testing.M) {
	testenv.Main(m, func(s *testenv.Suite) (err error) {
		env, err = s.Start(testenv.Options{})
		return err
	})
}
