// Package isolated runs one function of the current binary in a child process with a time, an
// output-size and a memory budget: the binary re-executes itself (os.Executable) with a marker in
// its environment, and the child, recognising the marker in an init function, runs the function on
// its standard input, writes the result to its standard output and exits (moby's reexec pattern).
//
// It exists because Go templates cannot be interrupted: a chart's `range until 20000000` or a
// nested loop keeps a goroutine busy and allocating until it is done, whatever its context says,
// and a goroutine cannot be stopped from outside. A process can: the parent kills it at the
// deadline, and the kernel takes all its memory back. Argo CD separates manifest generation into
// its repo-server for the same reason. The cost is a process start per call (tens of
// milliseconds), small next to fetching and applying a release.
//
// The budgets:
//   - time: the parent kills the child (SIGKILL) at the deadline;
//   - output: the parent reads at most the budget from the child's standard output and kills it
//     when there is more;
//   - memory: the child enforces it itself, in three layers: debug.SetMemoryLimit at 3/4 of the
//     budget (the GC works harder before the budget is reached, so garbage does not count), a watchdog that reads runtime/metrics and
//     exits with ExitMemory when the memory the Go runtime holds exceeds the budget, and
//     RLIMIT_DATA (the kernel refuses to map more, so even one huge allocation made between two
//     watchdog samples fails: the Go runtime then dies with "out of memory", which the parent
//     recognises). RLIMIT_AS is not used: the Go runtime reserves about a GiB of address space at
//     start, so it does not measure what a child uses; RLIMIT_DATA counts only the mappings the
//     runtime actually made writable.
//
// The child inherits nothing from the parent's environment but the marker and its budget: the
// parent's environment can hold credentials, and its GOMEMLIMIT is the parent's, not the child's.
// On Linux the child also dies with the parent (Pdeathsig).
package isolated

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Exit codes of a child, besides 0 (the output is the result) and the Go runtime's 2 (a panic or
// a fatal error such as running out of memory under RLIMIT_DATA).
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
)

// Errors of Run. The Go runtime's own "out of memory" under RLIMIT_DATA is reported as ErrMemory
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

// Limits are the budgets of one Run. Zero values mean no budget of that kind; callers set all
// three.
type Limits struct {
	Timeout        time.Duration
	MaxOutputBytes int64
	MaxMemoryBytes int64
}

// Func is a function a child runs: it gets the parent's input and returns the output.
type Func func(input []byte) ([]byte, error)

// Serve runs fn and exits when this process is a child started by Run with the same name;
// otherwise it returns at once. Call it from an init function of the package that owns fn, so
// that every binary linking that package (the manager, test binaries) can serve as its child
// without a change to main. A non-nil error of fn is a bug of the protocol (fn reports expected
// failures in its output): it goes to standard error, and the child exits with ExitFailed.
func Serve(name string, fn Func) {
	if os.Getenv(markerEnv) != name || name == "" {
		return
	}
	maxMem, _ := strconv.ParseInt(os.Getenv(memoryEnv), 10, 64)
	maxOut, _ := strconv.ParseInt(os.Getenv(outputEnv), 10, 64)
	if timeout, err := time.ParseDuration(os.Getenv(timeoutEnv)); err == nil && timeout > 0 {
		// The parent kills the child at the deadline; this timer covers a parent that died
		// without taking the child with it (Pdeathsig follows the parent's thread, not process).
		time.AfterFunc(timeout+time.Second, func() { os.Exit(ExitFailed) })
	}
	if maxMem > 0 {
		limitMemory(maxMem)
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	out, err := fn(in)
	if err != nil {
		fail(err)
	}
	if maxOut > 0 && int64(len(out)) > maxOut {
		os.Exit(ExitTooLarge)
	}
	if _, err := os.Stdout.Write(out); err != nil {
		fail(err)
	}
	os.Exit(0)
}

// OutputBudget returns, in a child, the output budget the parent gave it (0: none), so that the
// function can give up early (ExitOutputTooLarge) instead of building a result that is too large.
func OutputBudget() int64 {
	n, _ := strconv.ParseInt(os.Getenv(outputEnv), 10, 64)
	return n
}

// ExitOutputTooLarge ends a child as a result over its output budget does.
func ExitOutputTooLarge() {
	os.Exit(ExitTooLarge)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(ExitFailed)
}

// limitMemory sets the child's three memory layers (see the package comment).
func limitMemory(budget int64) {
	// The GC's target sits below the watchdog's threshold: garbage is collected before it counts
	// against the budget, and only memory in use ends the child.
	debug.SetMemoryLimit(budget / 4 * 3)
	setDataLimit(budget)
	samples := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	go func() {
		for {
			metrics.Read(samples)
			if used := int64(samples[0].Value.Uint64()) - int64(samples[1].Value.Uint64()); used > budget {
				fmt.Fprintf(os.Stderr, "memory budget of %d bytes exceeded: %d bytes in use\n", budget, used)
				os.Exit(ExitMemory)
			}
			time.Sleep(watchdogInterval)
		}
	}()
}

// Run starts the current binary as a child serving name, gives it input, and returns its output,
// within limits. An error of the child is one of this package's errors (errors.Is), with what the
// child wrote to standard error when that helps.
func Run(ctx context.Context, name string, input []byte, limits Limits) ([]byte, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("%w: finding the executable: %w", ErrUnavailable, err)
	}
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if limits.Timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, limits.Timeout)
	}
	defer cancel()

	cmd := childCommand(runCtx, exe, name, input, limits)
	stderr := &headBuffer{max: stderrBudget}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	out, tooLarge, readErr := readOutput(cmd, stdout, limits.MaxOutputBytes)
	// Wait closes stdout; reading must be done first (os/exec's rule for StdoutPipe).
	waitErr := cmd.Wait()

	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case tooLarge:
		return nil, ErrOutputTooLarge
	case runCtx.Err() != nil:
		return nil, ErrTimeout
	}
	if err := exitError(waitErr, readErr, stderr.String()); err != nil {
		return nil, err
	}
	return out, nil
}

// childCommand is the child serving name: the marker and the budgets are all of its environment
// (see the package comment).
func childCommand(ctx context.Context, exe, name string, input []byte, limits Limits) *exec.Cmd {
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = []string{
		markerEnv + "=" + name,
		memoryEnv + "=" + strconv.FormatInt(limits.MaxMemoryBytes, 10),
		outputEnv + "=" + strconv.FormatInt(limits.MaxOutputBytes, 10),
		timeoutEnv + "=" + limits.Timeout.String(),
	}
	cmd.Stdin = bytes.NewReader(input)
	cmd.SysProcAttr = sysProcAttr()
	return cmd
}

// readOutput reads the child's output, at most maxBytes of it (0: no bound), and kills the child
// when there is more; tooLarge says so.
func readOutput(cmd *exec.Cmd, stdout io.Reader, maxBytes int64) (out []byte, tooLarge bool, err error) {
	if maxBytes <= 0 {
		out, err = io.ReadAll(stdout)
		return out, false, err
	}
	out, err = io.ReadAll(io.LimitReader(stdout, maxBytes+1))
	if int64(len(out)) > maxBytes {
		_ = cmd.Process.Kill()
		return nil, true, err
	}
	return out, false, err
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

func (t *headBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
