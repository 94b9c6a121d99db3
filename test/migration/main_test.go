// Package migration_test follows the steps of docs/migration.md: a management cluster that the
// SCS reference (cluster-stack-operator and cluster-stack-provider-openstack) set up is handed to
// this operator, which must adopt what it finds (the ClusterClass, its templates, the release
// objects, the Glance image and a Cluster's addons) without deleting, recreating, uploading or
// installing anything again.
package migration_test

import (
	"testing"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// env is the management API server with this operator's CRDs, Cluster API's and CAPO's;
// workload is the API server of the workload cluster whose addons the reference installed.
var env, workload *testenv.Environment

func TestMain(m *testing.M) {
	testenv.Main(m, func(s *testenv.Suite) (err error) {
		if env, err = s.Start(testenv.Options{}); err != nil {
			return err
		}
		workload, err = s.Start(testenv.Options{})
		return err
	})
}
