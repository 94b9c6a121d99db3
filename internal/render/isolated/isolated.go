// Package isolated runs one function of the current binary in child processes with a time, an
// output-size and a memory budget per call: the binary re-executes itself (os.Executable) with a
// marker in its environment, and the child, recognising the marker in an init function, serves
// the function (moby's reexec pattern).
//
// It exists because Go templates cannot be interrupted: a chart's `range until 20000000` or a
// nested loop keeps a goroutine busy and allocating until it is done, whatever its context says,
// and a goroutine cannot be stopped from outside. A process can: the parent kills it at the
// deadline, and the kernel takes all its memory back. Argo CD separates manifest generation into
// its repo-server for the same reason.
//
// A Pool keeps at most Size such children (workers) alive and reuses them: starting the
// manager's binary and running its package initialisation costs 0.08-0.2 s, far more than
// rendering a chart, and it would be on the path of every release and every addon. A worker is
// started when a call finds no idle one, serves one call at a time over its standard input and
// output (frames with a length header), and lives until a call kills it, it retires, or it has
// been idle for idleTimeout (renderings come in bursts; between them no worker holds memory).
// Every budget is per call:
//   - time: at the deadline the parent kills the worker (SIGKILL); the next call starts another;
//   - output: the parent reads the length of an answer before the answer and kills the worker
//     when it is over the budget; it never reads more than one budget;
//   - memory: the worker enforces it itself, measured from its baseline: after each answer it
//     collects its garbage and returns free memory to the kernel (debug.FreeOSMemory), and what
//     it holds then is the baseline of the next call. During a call, debug.SetMemoryLimit sits at
//     the baseline plus 3/4 of the budget (the GC works harder before the budget is reached, so
//     garbage does not count), and a watchdog reading runtime/metrics exits with ExitMemory when
//     the memory the Go runtime holds exceeds the baseline plus the budget. RLIMIT_DATA is the
//     hard backstop against one huge allocation made between two watchdog samples: the kernel
//     refuses to map more and the Go runtime dies with "out of memory", which the parent
//     recognises. It is set once, at the worker's start, to what the worker has mapped then plus
//     one budget, and not raised later: the Go runtime keeps the mappings of its heap and reuses
//     them (the pages FreeOSMemory released stay mapped), so a call after a large one has the
//     same ceiling, and a reused worker can never hold more than a fresh child could.
//     RLIMIT_AS is not used: the Go runtime reserves about a GiB of address space at start, so it
//     does not measure what a child uses; RLIMIT_DATA counts only the mappings the runtime
//     actually made writable;
//   - leaks: a worker whose baseline has grown by more than retireGrowth since its start, or
//     that has served maxCalls calls, retires (says so and exits) after its answer, so nothing
//     a template left behind accumulates, and a worker that ended a call over a budget is gone.
//
// A child inherits nothing from the parent's environment but the marker and its budgets: the
// parent's environment can hold credentials, and its GOMEMLIMIT is the parent's, not the
// child's. On Linux a child also dies with the parent (Pdeathsig); an idle worker also ends when
// its standard input closes, which the parent's exit does whatever thread started it.
package isolated

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Exit codes of a child, besides 0 (its input closed, or it retired) and the Go runtime's 2 (a
// panic or a fatal error such as running out of memory under RLIMIT_DATA).
const (
	// ExitMemory means the watchdog saw the child's memory exceed its budget.
	ExitMemory = 97
	// ExitTooLarge means the result was larger than the output budget.
	ExitTooLarge = 98
	// ExitFailed means the child could not read its input or write its output.
	ExitFailed = 99
)

const (
	markerEnv    = "CLUSTERSTACK_ISOLATED"
	memoryEnv    = "CLUSTERSTACK_ISOLATED_MAX_MEMORY"
	outputEnv    = "CLUSTERSTACK_ISOLATED_MAX_OUTPUT"
	timeoutEnv   = "CLUSTERSTACK_ISOLATED_TIMEOUT"
	stderrBudget = 8 << 10
	// watchdogInterval is how often the child samples its memory. runtime/metrics.Read does not
	// stop the world, so sampling often costs little; RLIMIT_DATA covers what happens between
	// two samples.
	watchdogInterval = 5 * time.Millisecond
	// retireGrowth is how much a worker's baseline (memory held after collecting the garbage of
	// its calls) may grow beyond the baseline it started with before it retires. A rendering
	// leaves next to nothing behind (the Go runtime's own metadata grows by some KiB); more is
	// something a template or the function keeps, which must not accumulate over calls or eat
	// into the budget of later ones.
	retireGrowth = 8 << 20
	// maxCalls is how many calls a worker serves before it retires, whatever its baseline says:
	// one process start per hundred calls costs about 1 ms a call, and a slow leak the baseline
	// does not show (e.g. in the kernel's view of the process) cannot last.
	maxCalls = 100
)

// Errors of Pool.Run. The Go runtime's own "out of memory" under RLIMIT_DATA is reported as ErrMemory
// too.
var (
	// ErrTimeout means the child did not finish within Limits.Timeout and was killed.
	ErrTimeout = errors.New("time budget exceeded")
	// ErrOutputTooLarge means the child's result exceeded Limits.MaxOutputBytes.
	ErrOutputTooLarge = errors.New("output budget exceeded")
	// ErrMemory means the child's memory exceeded Limits.MaxMemoryBytes.
	ErrMemory = errors.New("memory budget exceeded")
	// ErrCrashed means the child ended otherwise than with a result (a panic, a signal).
	ErrCrashed = errors.New("isolated process failed")
	// ErrUnavailable means no child could be started (no executable, no process). Callers fail
	// closed: running the function in-process would remove every budget.
	ErrUnavailable = errors.New("cannot start an isolated process")
)

// Limits are the budgets of one call (Pool.Run). Zero values mean no budget of that kind;
// callers set all three.
type Limits struct {
	Timeout        time.Duration
	MaxOutputBytes int64
	MaxMemoryBytes int64
}

// exitError tells how a child that was neither cancelled nor over its time or output budget
// ended: nil when it returned a result.
func exitError(waitErr, readErr error, stderr string) error {
	var exitErr *exec.ExitError
	if errors.As(waitErr, &exitErr) {
		switch code := exitErr.ExitCode(); {
		case code == ExitMemory:
			return ErrMemory
		case code == ExitTooLarge:
			return ErrOutputTooLarge
		case outOfMemory(stderr):
			return ErrMemory
		default:
			return fmt.Errorf("%w (%v): %s", ErrCrashed, waitErr, firstLine(stderr))
		}
	}
	if waitErr != nil {
		return fmt.Errorf("%w: %w", ErrCrashed, waitErr)
	}
	if readErr != nil {
		return fmt.Errorf("%w: reading its output: %w", ErrCrashed, readErr)
	}
	return nil
}

// outOfMemory tells from a child's standard error whether it died of RLIMIT_DATA refusing it a
// mapping. The Go runtime says so in several ways: its own "out of memory"; a refused mmap before
// that ("cannot allocate memory"); a thread it or cgo cannot create (thread stacks are mappings
// too);
// and, with Go 1.26's garbage collector, a segmentation fault inside the runtime's mark phase
// when a span could not be mapped. The child is pure Go, so a fault whose first frame is in the
// runtime has no other cause a chart or template could bring about.
func outOfMemory(stderr string) bool {
	switch {
	case strings.Contains(stderr, "out of memory"),
		strings.Contains(stderr, "runtime: cannot allocate memory"),
		strings.Contains(stderr, "runtime: failed to create new OS thread"),
		strings.Contains(stderr, "runtime/cgo: pthread_create failed"):
		return true
	case strings.HasPrefix(stderr, "SIGSEGV"):
		return strings.HasPrefix(firstFrame(stderr), "runtime.")
	}
	return false
}

// firstFrame returns the function of the first stack frame of a Go crash report: the line after
// the first "goroutine " header.
func firstFrame(stderr string) string {
	_, rest, ok := strings.Cut(stderr, "\ngoroutine ")
	if !ok {
		return ""
	}
	lines := strings.SplitN(rest, "\n", 3)
	if len(lines) < 2 {
		return ""
	}
	return strings.TrimSpace(lines[1])
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// headBuffer keeps the first max bytes written to it: the child's first line of standard error
// says what went wrong, a goroutine dump after it does not need to be kept in full.
type headBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *headBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if room := t.max - len(t.buf); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		t.buf = append(t.buf, p[:room]...)
	}
	return len(p), nil
}

// reset forgets what was written: a worker's standard error is read per call.
func (t *headBuffer) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = t.buf[:0]
}

func (t *headBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
