package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"testing"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Suite is what a test package's setup (see Main) gets: the environments it starts are stopped,
// and the cleanups it registers run, after the package's tests, last registered first.
type Suite struct {
	// Ctx is cancelled after the tests, before the cleanups run: managers started with it stop.
	Ctx      context.Context
	cleanups []func()
}

// Start starts an Environment that is stopped after the tests.
func (s *Suite) Start(opts Options) (*Environment, error) {
	env, err := Start(opts)
	if err != nil {
		return nil, err
	}
	s.Cleanup(func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	})
	return env, nil
}

// StartWithWorkload starts a management Environment with opts and, at the same time, a plain
// one standing in for a workload cluster (most of a start is waiting for etcd, the API server
// and the CRDs); both are stopped after the tests, also when only one of them started.
func (s *Suite) StartWithWorkload(opts Options) (mgmt, workload *Environment, err error) {
	type started struct {
		env *Environment
		err error
	}
	workloadStarted := make(chan started, 1)
	go func() {
		env, err := Start(Options{})
		workloadStarted <- started{env, err}
	}()
	mgmt, err = s.Start(opts)
	w := <-workloadStarted
	if w.env != nil {
		s.Cleanup(func() {
			if err := w.env.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "stopping the workload API server:", err)
			}
		})
	}
	if err = errors.Join(err, w.err); err != nil {
		return nil, nil, err
	}
	return mgmt, w.env, nil
}

// Cleanup registers f to run after the tests.
func (s *Suite) Cleanup(f func()) { s.cleanups = append(s.cleanups, f) }

// Main is the TestMain of a package whose tests share API servers and doubles: it sets the
// controllers' logger (silent unless TEST_VERBOSE is set: the failure tests cause expected
// errors), runs setup, runs the tests and then cleans up, and exits with the tests' code (or 1
// when setup fails, saying why).
func Main(m *testing.M, setup func(s *Suite) error) {
	os.Exit(run(m, setup))
}

func run(m *testing.M, setup func(s *Suite) error) int {
	ctrl.SetLogger(Logger())
	ctx, cancel := context.WithCancel(context.Background())
	s := &Suite{Ctx: ctx}
	defer func() {
		cancel()
		for _, f := range slices.Backward(s.cleanups) {
			f()
		}
	}()
	if err := setup(s); err != nil {
		fmt.Fprintln(os.Stderr, "setting up the test environment:", err)
		return 1
	}
	return m.Run()
}

// Logger is the controllers' logger in tests: development output on standard error with
// TEST_VERBOSE set, else none.
func Logger() logr.Logger {
	out := io.Discard
	if os.Getenv("TEST_VERBOSE") != "" {
		out = os.Stderr
	}
	return zap.New(zap.WriteTo(out), zap.UseDevMode(true), zap.StacktraceLevel(zapcore.DPanicLevel))
}
