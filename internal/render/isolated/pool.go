package isolated

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// exitGrace is how long the parent waits for a worker that broke off a call (its answer ended
// early) to exit by itself, so that its exit code says why, before it kills it.
const exitGrace = time.Second

// idleTimeout is how long a worker may wait for a call before the pool ends it: a fleet's
// renderings come in bursts (a rollout, a manager's start), and between them the manager need not
// hold the workers' memory (about 8 MiB of heap and stacks each, besides the binary's pages it
// shares with the manager). A variable for the tests.
var idleTimeout = 10 * time.Second

// starts counts the workers this process started, over all pools.
var starts atomic.Int64

// Starts returns how many workers this process has started, over all pools.
func Starts() int64 { return starts.Load() }

// Pool runs calls of the Func served under one name in at most Size workers at a time (see the
// package comment). Its methods are safe for concurrent use.
type Pool struct {
	name   string
	limits Limits
	// slots holds a token per call in progress: at most Size calls, and so workers, at once.
	slots chan struct{}

	mu     sync.Mutex
	idle   []*worker
	closed bool
}

// NewPool returns a pool of at most size workers serving name, each call within limits. It
// starts no process: workers start when calls need them.
func NewPool(name string, size int, limits Limits) *Pool {
	return &Pool{name: name, limits: limits, slots: make(chan struct{}, max(size, 1))}
}

// Run gives input to a worker and returns its output, within the pool's limits; it waits for a
// free worker first (that wait is not part of the time budget). An error is one of this
// package's errors (errors.Is), with what the worker wrote to standard error when that helps, or
// the error of ctx; a worker that did not answer is gone, and the next call gets another.
func (p *Pool) Run(ctx context.Context, input []byte) ([]byte, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-p.slots }()
	w, err := p.take(ctx)
	if err != nil {
		return nil, err
	}
	out, err := p.call(ctx, w, input)
	if err != nil {
		w.end()
		return nil, err
	}
	p.put(w)
	return out, nil
}

// Close ends the idle workers and makes every busy one end after its call. Calls after Close
// still work, each in a worker of its own.
func (p *Pool) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, w := range idle {
		w.end()
	}
}

// Prestart starts up to n workers (at most the pool's size) in the background, so that the first
// calls do not wait for a process start; they end after idleTimeout when no call comes.
func (p *Pool) Prestart(n int) {
	for range min(n, cap(p.slots)) {
		go func() {
			// Starting holds a slot, as a call would: never more workers than the size.
			p.slots <- struct{}{}
			defer func() { <-p.slots }()
			if w, err := p.start(); err == nil {
				p.put(w)
			}
		}()
	}
}

// take returns an idle worker that is ready for a request, or starts one. A worker writes a
// ready frame when it starts and after each answer; take reads it, so a new or just-answered
// worker's start-up or garbage collection is not part of the next call's time budget.
func (p *Pool) take(ctx context.Context) (*worker, error) {
	for {
		p.mu.Lock()
		var w *worker
		if n := len(p.idle); n > 0 {
			w, p.idle = p.idle[n-1], p.idle[:n-1]
		}
		p.mu.Unlock()
		fresh := w == nil
		if fresh {
			var err error
			if w, err = p.start(); err != nil {
				return nil, err
			}
		} else {
			// Taken from the list, w is this call's: a reaper that fires now finds it gone.
			w.idle.Stop()
		}
		if w.ready(ctx, p.limits.Timeout) {
			return w, nil
		}
		w.end()
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case fresh:
			return nil, fmt.Errorf("%w: the worker did not start (%v): %s", ErrUnavailable, w.waitErr, firstLine(w.stderr.String()))
		}
		// An idle worker that retired or died while idle: not this call's doing.
	}
}

func (p *Pool) put(w *worker) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		w.end()
		return
	}
	p.idle = append(p.idle, w)
	w.idle = time.AfterFunc(idleTimeout, func() { p.reap(w) })
	p.mu.Unlock()
}

// reap ends w if it is still idle.
func (p *Pool) reap(w *worker) {
	p.mu.Lock()
	i := slices.Index(p.idle, w)
	if i >= 0 {
		p.idle = slices.Delete(p.idle, i, i+1)
	}
	p.mu.Unlock()
	if i >= 0 {
		w.end()
	}
}

// call runs one request on w within the limits; on an error w is broken and must end.
func (p *Pool) call(ctx context.Context, w *worker, input []byte) ([]byte, error) {
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if p.limits.Timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, p.limits.Timeout)
	}
	defer cancel()
	stop := context.AfterFunc(runCtx, w.kill)
	defer stop()

	w.stderr.reset()
	out, tooLarge, ioErr := w.roundTrip(input, p.limits.MaxOutputBytes)
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case tooLarge:
		return nil, ErrOutputTooLarge
	case runCtx.Err() != nil:
		return nil, ErrTimeout
	case ioErr == nil:
		return out, nil
	}
	// The answer broke off: the worker ended, and how it ended says why.
	return nil, exitError(w.waitExit(), ioErr, w.stderr.String())
}

// start starts a worker: the marker and the budgets are all of its environment (see the package
// comment). Its standard input and output are pipes of the parent's own rather than os/exec's,
// whose Wait would close the output while the answer before a retirement is still being read.
func (p *Pool) start() (*worker, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("%w: finding the executable: %w", ErrUnavailable, err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	w := &worker{stdin: inW, stdout: outR, stderr: &headBuffer{max: stderrBudget}, exited: make(chan struct{})}
	w.cmd = exec.Command(exe)
	w.cmd.Env = []string{
		markerEnv + "=" + p.name,
		memoryEnv + "=" + strconv.FormatInt(p.limits.MaxMemoryBytes, 10),
		outputEnv + "=" + strconv.FormatInt(p.limits.MaxOutputBytes, 10),
		timeoutEnv + "=" + p.limits.Timeout.String(),
	}
	w.cmd.Stdin, w.cmd.Stdout, w.cmd.Stderr = inR, outW, w.stderr
	w.cmd.SysProcAttr = sysProcAttr()
	err = w.cmd.Start()
	// The worker holds its ends now; the parent's copies would keep the pipes open after it
	// died.
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	starts.Add(1)
	go func() {
		w.waitErr = w.cmd.Wait()
		close(w.exited)
	}()
	return w, nil
}

// worker is one child process serving a pool.
type worker struct {
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *os.File
	stderr *headBuffer
	// idle ends the worker when it has waited too long for a call (idleTimeout).
	idle *time.Timer
	// exited is closed when the process has ended; waitErr is then how.
	exited  chan struct{}
	waitErr error
}

// ready reads the frame a worker writes after collecting the garbage of its last call: true
// when it takes another request.
func (w *worker) ready(ctx context.Context, timeout time.Duration) bool {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	stop := context.AfterFunc(ctx, w.kill)
	defer stop()
	kind, n, err := w.readHeader()
	return err == nil && kind == frameReady && n == 0
}

// roundTrip sends input and reads the answer, at most maxBytes of it (0: no bound); tooLarge
// says the answer is longer, and nothing of it was read.
func (w *worker) roundTrip(input []byte, maxBytes int64) (out []byte, tooLarge bool, err error) {
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(len(input)))
	if _, err := w.stdin.Write(hdr[:]); err != nil {
		return nil, false, fmt.Errorf("writing the request: %w", err)
	}
	if _, err := w.stdin.Write(input); err != nil {
		return nil, false, fmt.Errorf("writing the request: %w", err)
	}
	kind, n, err := w.readHeader()
	if err != nil {
		return nil, false, fmt.Errorf("reading its output: %w", err)
	}
	if kind != frameAnswer {
		return nil, false, fmt.Errorf("reading its output: a frame of kind %q instead of an answer", kind)
	}
	if maxBytes > 0 && n > uint64(maxBytes) {
		return nil, true, nil
	}
	out = make([]byte, n)
	if _, err := io.ReadFull(w.stdout, out); err != nil {
		return nil, false, fmt.Errorf("reading its output: %w", err)
	}
	return out, false, nil
}

func (w *worker) readHeader() (kind byte, n uint64, err error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(w.stdout, hdr[:]); err != nil {
		return 0, 0, err
	}
	return hdr[0], binary.BigEndian.Uint64(hdr[1:]), nil
}

func (w *worker) kill() { _ = w.cmd.Process.Kill() }

// waitExit waits for the worker to exit, killing it after exitGrace, and returns how it ended.
func (w *worker) waitExit() error {
	select {
	case <-w.exited:
	case <-time.After(exitGrace):
		w.kill()
		<-w.exited
	}
	return w.waitErr
}

// end kills the worker, waits for it and closes the parent's ends of its pipes.
func (w *worker) end() {
	w.kill()
	<-w.exited
	w.stdin.Close()
	w.stdout.Close()
}
