package isolated

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"time"
)

// The frames a worker writes: a kind byte and a big-endian length, then that many bytes. The
// parent's requests are a length and the input.
const (
	// frameAnswer holds the output of one call.
	frameAnswer byte = 'a'
	// frameReady says the worker has started, or collected the last call's garbage, and takes
	// the next request.
	frameReady byte = 'r'
	// frameRetire says the worker exits instead (see retireGrowth and maxCalls).
	frameRetire byte = 'x'
	// headerLen is the length of a worker's frame header.
	headerLen = 1 + 8
)

// Func is a function a child runs: it gets the parent's input and returns the output.
type Func func(input []byte) ([]byte, error)

// Serve serves fn and exits when this process is a worker started by a Pool with the same name;
// otherwise it returns at once. Call it from an init function of the package that owns fn, so
// that every binary linking that package (the manager, test binaries) can serve as its worker
// without a change to main. A non-nil error of fn is a bug of the protocol (fn reports expected
// failures in its output): it goes to standard error, and the worker exits with ExitFailed.
func Serve(name string, fn Func) {
	if os.Getenv(markerEnv) != name || name == "" {
		return
	}
	var l Limits
	l.MaxMemoryBytes, _ = strconv.ParseInt(os.Getenv(memoryEnv), 10, 64)
	l.MaxOutputBytes, _ = strconv.ParseInt(os.Getenv(outputEnv), 10, 64)
	l.Timeout, _ = time.ParseDuration(os.Getenv(timeoutEnv))
	serve(bufio.NewReader(os.Stdin), os.Stdout, fn, l)
}

// serve answers requests until its input closes or it retires; it never returns.
func serve(in io.Reader, out io.Writer, fn Func, l Limits) {
	var guard *memoryGuard
	if l.MaxMemoryBytes > 0 {
		guard = guardMemory(l.MaxMemoryBytes)
	}
	if err := writeFrame(out, frameReady, nil); err != nil {
		fail(err)
	}
	for calls := 1; ; calls++ {
		input, err := readRequest(in)
		if errors.Is(err, io.EOF) {
			// The parent closed the pipe (it retired this worker or exited).
			os.Exit(0)
		}
		if err != nil {
			fail(err)
		}
		var deadline *time.Timer
		if l.Timeout > 0 {
			// The parent kills the worker at the deadline; this timer covers a parent that died
			// without taking the worker with it (Pdeathsig follows the parent's thread, not its
			// process).
			deadline = time.AfterFunc(l.Timeout+time.Second, func() { os.Exit(ExitFailed) })
		}
		result, err := fn(input)
		if err != nil {
			fail(err)
		}
		if l.MaxOutputBytes > 0 && int64(len(result)) > l.MaxOutputBytes {
			os.Exit(ExitTooLarge)
		}
		if err := writeFrame(out, frameAnswer, result); err != nil {
			fail(err)
		}
		if deadline != nil {
			deadline.Stop()
		}
		// input and result are dead here: the settle collects them with the call's garbage.
		retire := calls >= maxCalls
		if guard != nil && guard.settle()-guard.start > retireGrowth {
			retire = true
		}
		if retire {
			_ = writeFrame(out, frameRetire, nil)
			os.Exit(0)
		}
		if err := writeFrame(out, frameReady, nil); err != nil {
			fail(err)
		}
	}
}

func readRequest(r io.Reader) ([]byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	input := make([]byte, binary.BigEndian.Uint64(hdr[:]))
	if _, err := io.ReadFull(r, input); err != nil {
		return nil, fmt.Errorf("reading a request: %w", err)
	}
	return input, nil
}

func writeFrame(w io.Writer, kind byte, data []byte) error {
	var hdr [headerLen]byte
	hdr[0] = kind
	binary.BigEndian.PutUint64(hdr[1:], uint64(len(data)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}

// OutputBudget returns, in a worker, the output budget the parent gave it (0: none), so that the
// function can give up early (ExitOutputTooLarge) instead of building a result that is too large.
func OutputBudget() int64 {
	n, _ := strconv.ParseInt(os.Getenv(outputEnv), 10, 64)
	return n
}

// ExitOutputTooLarge ends a worker as a result over its output budget does.
func ExitOutputTooLarge() {
	os.Exit(ExitTooLarge)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(ExitFailed)
}

// memoryGuard holds a worker's memory layers (see the package comment).
type memoryGuard struct {
	budget int64
	// start is the baseline after the worker's own start-up, before its first call.
	start int64
	// limit is the watchdog's threshold: the current baseline plus the budget.
	limit atomic.Int64
}

// guardMemory sets RLIMIT_DATA, takes the first baseline and starts the watchdog.
func guardMemory(budget int64) *memoryGuard {
	setDataLimit(budget)
	g := &memoryGuard{budget: budget}
	g.start = g.settle()
	go g.watch()
	return g
}

// settle collects the garbage of the last call, returns free memory to the kernel and makes
// what is left the baseline of the next call, which it returns.
func (g *memoryGuard) settle() int64 {
	debug.FreeOSMemory()
	base := inUse(make([]metrics.Sample, 2))
	// The GC's target sits below the watchdog's threshold: garbage is collected before it counts
	// against the budget, and only memory in use ends the worker.
	debug.SetMemoryLimit(base + g.budget/4*3)
	g.limit.Store(base + g.budget)
	return base
}

// watch ends the worker with ExitMemory when the memory the Go runtime holds exceeds the
// baseline plus the budget.
func (g *memoryGuard) watch() {
	samples := make([]metrics.Sample, 2)
	for {
		limit := g.limit.Load()
		if used := inUse(samples); used > limit {
			fmt.Fprintf(os.Stderr, "memory budget of %d bytes exceeded: %d bytes in use, %d above the baseline\n", g.budget, used, used-(limit-g.budget))
			os.Exit(ExitMemory)
		}
		time.Sleep(watchdogInterval)
	}
}

// inUse is the memory the Go runtime holds from the kernel, without what it has released.
func inUse(samples []metrics.Sample) int64 {
	samples[0].Name, samples[1].Name = "/memory/classes/total:bytes", "/memory/classes/heap/released:bytes"
	metrics.Read(samples)
	return int64(samples[0].Value.Uint64()) - int64(samples[1].Value.Uint64())
}
