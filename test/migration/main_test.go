// Package migration_test follows the steps of docs/migration.md: a management cluster that the
// SCS reference (cluster-stack-operator and cluster-stack-provider-openstack) set up is handed to
// this operator, which must adopt what it finds (the ClusterClass, its templates, the release
// objects and the Glance image) without deleting, recreating or uploading anything.
package migration_test

import (
	"testing"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// env is the management API server with this operator's CRDs, Cluster API's and CAPO's.
var env *testenv.Environment

func TestMain(m *testing.M) {
	testenv.Main(m, func(s *testenv.Suite) (err error) {
		env, err = s.Start(testenv.Options{})
		return err
	})
}
