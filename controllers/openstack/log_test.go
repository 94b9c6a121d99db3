package openstack

import (
	"os"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// logr returns a logger that prints only with TEST_LOG set, so test output stays readable.
func testLogger() logr.Logger {
	if os.Getenv("TEST_LOG") == "" {
		return logr.Discard()
	}
	return zap.New(zap.UseDevMode(true))
}
