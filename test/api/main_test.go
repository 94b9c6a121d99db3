// Package api_test checks the operator's CRDs against a real API server: every CEL rule refuses
// bad input with its message and accepts good input, defaults apply, and manifests written for the
// SCS reference operators apply unchanged.
package api_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// env is shared by every test of the package: one API server per package, not per test.
var env *testenv.Environment

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	env, err = testenv.Start(testenv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	return m.Run()
}
