package metrics_test

import (
	"testing"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// env is the package's API server (with the operator's CRDs), shared by its tests.
var env *testenv.Environment

func TestMain(m *testing.M) {
	testenv.Main(m, func(s *testenv.Suite) error {
		var err error
		env, err = s.Start(testenv.Options{})
		return err
	})
}
