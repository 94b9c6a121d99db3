package isolated_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/render/isolated"
)

var sink [][]byte

// The test binary is its own worker: each name below is a Func a test runs in workers.
func init() {
	isolated.Serve("echo", func(in []byte) ([]byte, error) { return in, nil })
	isolated.Serve("panic", func([]byte) ([]byte, error) { panic("boom") })
	isolated.Serve("sleep", func([]byte) ([]byte, error) { time.Sleep(time.Hour); return nil, nil })
	isolated.Serve("large", func([]byte) ([]byte, error) { return bytes.Repeat([]byte("x"), 1<<20), nil })
	isolated.Serve("grow", func([]byte) ([]byte, error) { grow(); return nil, nil })
	isolated.Serve("huge", func([]byte) ([]byte, error) { return huge(), nil })
	// commands does what its input says, so that one worker can be given good and hostile calls
	// in turn.
	isolated.Serve("commands", commands)
}

// grow makes many small live allocations: the watchdog sees them grow.
func grow() {
	for {
		sink = append(sink, bytes.Repeat([]byte("x"), 1<<20))
	}
}

// huge makes one allocation far over the budget, faster than the watchdog samples: RLIMIT_DATA
// stops it.
func huge() []byte {
	b := make([]byte, 1<<30)
	for i := range b {
		b[i] = 1
	}
	return b[:1]
}

// commands runs "<command> <argument>": pid (answers the worker's process id), sleep <duration>,
// use <bytes> (holds that much memory during the call), leak <bytes> (keeps it after the call),
// and the hostile ones: forever, large, grow, huge, panic.
func commands(in []byte) ([]byte, error) {
	cmd, arg, _ := strings.Cut(string(in), " ")
	n, _ := strconv.ParseInt(arg, 10, 64)
	switch cmd {
	case "pid":
		return []byte(strconv.Itoa(os.Getpid())), nil
	case "sleep":
		d, _ := time.ParseDuration(arg)
		time.Sleep(d)
		return []byte(strconv.Itoa(os.Getpid())), nil
	case "use":
		b := make([]byte, n)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		defer runtime.KeepAlive(b)
		return []byte(strconv.Itoa(os.Getpid())), nil
	case "leak":
		b := bytes.Repeat([]byte("x"), int(n))
		sink = append(sink, b)
		return []byte(strconv.Itoa(os.Getpid())), nil
	case "forever":
		time.Sleep(time.Hour)
	case "large":
		return bytes.Repeat([]byte("x"), 1<<20), nil
	case "grow":
		grow()
	case "huge":
		return huge(), nil
	case "panic":
		panic("boom")
	}
	return nil, fmt.Errorf("unknown command %q", cmd)
}

var limits = isolated.Limits{Timeout: 20 * time.Second, MaxOutputBytes: 64 << 10, MaxMemoryBytes: 64 << 20}

func newPool(t *testing.T, name string, size int, l isolated.Limits) *isolated.Pool {
	t.Helper()
	p := isolated.NewPool(name, size, l)
	t.Cleanup(p.Close)
	return p
}

func TestRun(t *testing.T) {
	short := limits
	short.Timeout = time.Second
	for _, tc := range []struct {
		name   string
		limits isolated.Limits
		want   error
	}{
		{"echo", limits, nil},
		{"panic", limits, isolated.ErrCrashed},
		{"sleep", short, isolated.ErrTimeout},
		{"large", limits, isolated.ErrOutputTooLarge},
		{"grow", limits, isolated.ErrMemory},
		{"huge", limits, isolated.ErrMemory},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := newPool(t, tc.name, 1, tc.limits).Run(context.Background(), []byte("hello"))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want == nil && string(out) != "hello" {
				t.Errorf("out = %q, want the input back", out)
			}
		})
	}
}

func TestRunCancelled(t *testing.T) {
	p := newPool(t, "commands", 1, isolated.Limits{Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	if _, err := p.Run(ctx, []byte("forever")); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// Only that call was abandoned: the pool serves the next.
	if _, err := p.Run(context.Background(), []byte("pid")); err != nil {
		t.Fatalf("the call after a cancelled one: %v", err)
	}
}

// run calls p and returns the answer, failing the test on an error.
func run(t *testing.T, p *isolated.Pool, input string) string {
	t.Helper()
	out, err := p.Run(context.Background(), []byte(input))
	if err != nil {
		t.Fatalf("%s: %v", input, err)
	}
	return string(out)
}

// TestWorkerIsReused checks that one worker process serves many calls.
func TestWorkerIsReused(t *testing.T) {
	p := newPool(t, "commands", 2, limits)
	before := isolated.Starts()
	pids := map[string]bool{}
	for range 30 {
		pids[run(t, p, "pid")] = true
	}
	if started := isolated.Starts() - before; started != 1 || len(pids) != 1 {
		t.Errorf("30 calls one after the other started %d workers in %d processes, want 1", started, len(pids))
	}
}

// TestBombKillsOnlyItsWorker gives one pool a call over each budget in turn, each followed by a
// good call: the bomb ends with its budget's error, and the next call succeeds in a new worker.
func TestBombKillsOnlyItsWorker(t *testing.T) {
	l := limits
	l.Timeout = 2 * time.Second
	p := newPool(t, "commands", 1, l)
	pid := run(t, p, "pid")
	for _, tc := range []struct {
		bomb string
		want error
	}{
		{"forever", isolated.ErrTimeout},
		{"large", isolated.ErrOutputTooLarge},
		{"grow", isolated.ErrMemory},
		{"huge", isolated.ErrMemory},
		{"panic", isolated.ErrCrashed},
	} {
		t.Run(tc.bomb, func(t *testing.T) {
			before := isolated.Starts()
			if _, err := p.Run(context.Background(), []byte(tc.bomb)); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			next := run(t, p, "pid")
			if next == pid {
				t.Errorf("the call after %s ran in the same process %s", tc.bomb, pid)
			}
			if started := isolated.Starts() - before; started != 1 {
				t.Errorf("%d workers started for the bomb and the call after it, want 1 (the bomb's worker is reused from the call before)", started)
			}
			pid = next
		})
	}
}

// TestMemoryIsPerCall checks that the memory budget is measured per call, from the worker's
// baseline: calls that each hold 0.6 of the budget all succeed in one worker, one that holds
// twice the budget fails, and the next call succeeds again.
func TestMemoryIsPerCall(t *testing.T) {
	p := newPool(t, "commands", 1, limits)
	before := isolated.Starts()
	use := fmt.Sprintf("use %d", limits.MaxMemoryBytes/10*6)
	pids := map[string]bool{}
	for range 6 {
		pids[run(t, p, use)] = true
	}
	if started := isolated.Starts() - before; started != 1 || len(pids) != 1 {
		t.Errorf("6 calls of 0.6 budgets started %d workers in %d processes, want 1", started, len(pids))
	}
	if _, err := p.Run(context.Background(), fmt.Appendf(nil, "use %d", 2*limits.MaxMemoryBytes)); !errors.Is(err, isolated.ErrMemory) {
		t.Fatalf("a call of two budgets: err = %v, want %v", err, isolated.ErrMemory)
	}
	run(t, p, use)
}

// TestWorkerRetires checks that a worker whose baseline grew, and one that has served its
// share of calls, is replaced.
func TestWorkerRetires(t *testing.T) {
	t.Run("leak", func(t *testing.T) {
		p := newPool(t, "commands", 1, limits)
		first := run(t, p, "leak 1048576")
		if again := run(t, p, "pid"); again != first {
			t.Fatalf("a worker that kept 1 MiB was replaced")
		}
		run(t, p, "leak 16777216")
		if after := run(t, p, "pid"); after == first {
			t.Errorf("a worker that kept 17 MiB over its calls still serves")
		}
	})
	t.Run("calls", func(t *testing.T) {
		p := newPool(t, "commands", 1, limits)
		pids := map[string]int{}
		for range 250 {
			pids[run(t, p, "pid")]++
		}
		if len(pids) != 3 {
			t.Errorf("250 calls ran in %d processes (%v), want 3 of at most 100 calls", len(pids), pids)
		}
		for pid, n := range pids {
			if n > 100 {
				t.Errorf("process %s served %d calls", pid, n)
			}
		}
	})
}

// TestKilledWorker checks that a worker killed during a call gives ErrCrashed and is replaced.
func TestKilledWorker(t *testing.T) {
	p := newPool(t, "commands", 1, limits)
	pid, err := strconv.Atoi(run(t, p, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}()
	if _, err := p.Run(context.Background(), []byte("sleep 1m")); !errors.Is(err, isolated.ErrCrashed) {
		t.Fatalf("err = %v, want %v", err, isolated.ErrCrashed)
	}
	if next := run(t, p, "pid"); next == strconv.Itoa(pid) {
		t.Errorf("the killed worker still serves")
	}
}

// TestPoolSize checks that no more workers run than the pool's size, however many calls wait.
func TestPoolSize(t *testing.T) {
	const size = 2
	p := newPool(t, "commands", size, limits)
	before := isolated.Starts()
	done := make(chan struct{})
	most := 0
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
				most = max(most, len(children()))
			}
		}
	})
	var wg sync.WaitGroup
	pids := make(chan string, 3*size)
	for range 3 * size {
		wg.Go(func() {
			out, err := p.Run(context.Background(), []byte("sleep 300ms"))
			if err != nil {
				t.Error(err)
			}
			pids <- string(out)
		})
	}
	wg.Wait()
	close(done)
	sampler.Wait()
	close(pids)
	distinct := map[string]bool{}
	for pid := range pids {
		distinct[pid] = true
	}
	if started := isolated.Starts() - before; started != size || len(distinct) != size {
		t.Errorf("%d calls started %d workers in %d processes, want %d", 3*size, started, len(distinct), size)
	}
	if most > size {
		t.Errorf("%d child processes at once, want at most %d", most, size)
	}
}

// children lists this process's child processes.
func children() []string {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", os.Getpid()))
	var out []string
	for _, task := range tasks {
		data, _ := os.ReadFile(task)
		out = append(out, strings.Fields(string(data))...)
	}
	return out
}

// TestPrestart checks that prestarted workers serve the first calls, and that no more start than
// the pool's size.
func TestPrestart(t *testing.T) {
	p := newPool(t, "commands", 2, limits)
	before := isolated.Starts()
	p.Prestart(5)
	deadline := time.Now().Add(20 * time.Second)
	for isolated.Starts()-before < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the workers did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := p.Run(context.Background(), []byte("sleep 100ms")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if started := isolated.Starts() - before; started != 2 {
		t.Errorf("a prestart of 5 and 4 calls in a pool of 2 started %d workers, want 2", started)
	}
}
