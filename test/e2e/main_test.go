package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// The manager binary is built at most once per package run, by the first benchmark that needs
// it, so that `go test ./...` (which runs no benchmark) builds nothing.
var (
	buildOnce   sync.Once
	buildDir    string
	managerPath string
	buildErr    error
)

func TestMain(m *testing.M) {
	// envtest logs through controller-runtime; the manager's own log goes to a file per scenario.
	ctrllog.SetLogger(logr.Discard())
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// managerBinary returns the path of the manager built from the repository as the Dockerfile
// builds it: static (CGO_ENABLED=0, so no C library is mapped into the process, which the memory
// figures would otherwise count) and stripped (-s -w). -trimpath is left out: it only changes file
// names in the binary and would rebuild every dependency once more.
func managerBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "clusterstack-e2e-bin-"); buildErr != nil {
			return
		}
		managerPath = filepath.Join(buildDir, "manager")
		cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", managerPath, ".")
		cmd.Dir = testenv.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building the manager: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return managerPath
}
