package isolated

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestOutOfMemory(t *testing.T) {
	for name, tc := range map[string]struct {
		stderr string
		want   bool
	}{
		"runtime out of memory": {stderr: "runtime: out of memory: cannot allocate 1073741824-byte block (3997696 in use)\nfatal error: out of memory\n", want: true},
		"mmap refused":          {stderr: "runtime: cannot allocate memory\nfatal error: runtime: cannot allocate memory\n", want: true},
		"no thread":             {stderr: "runtime: failed to create new OS thread (have 5 already; errno=11)\nruntime: may need to increase max user processes (ulimit -u)\nfatal error: newosproc\n", want: true},
		"no cgo thread":         {stderr: "runtime/cgo: pthread_create failed: Resource temporarily unavailable\nSIGABRT: abort\n", want: true},
		// Captured from a child that hit RLIMIT_DATA under Go 1.26's garbage collector.
		"fault in the garbage collector": {stderr: "SIGSEGV: segmentation violation\nPC=0x4318bd m=4 sigcode=1 addr=0x0\n\ngoroutine 0 gp=0x21759a10ba40 m=4 mp=0x21759a13b808 [idle]:\nruntime.(*spanQueue).tryDrain(0x217500000400?, 0x43a105?, 0x7025a8?)\n\t/usr/local/go/src/runtime/mgcmark_greenteagc.go:520 +0x5d\n", want: true},
		"fault in the program":           {stderr: "SIGSEGV: segmentation violation\nPC=0x4318bd m=0 sigcode=1\n\ngoroutine 1 gp=0x1 m=0 mp=0x1 [running]:\nmain.render(0x0)\n\t/src/main.go:10 +0x5d\n"},
		"panic":                          {stderr: "panic: runtime error: index out of range [3] with length 3\n\ngoroutine 1 [running]:\nmain.main()\n"},
		"nothing":                        {},
	} {
		t.Run(name, func(t *testing.T) {
			if got := outOfMemory(tc.stderr); got != tc.want {
				t.Errorf("outOfMemory = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestIdleWorkerEnds checks that a worker left idle for idleTimeout ends, and that the next call
// gets a new one.
func TestIdleWorkerEnds(t *testing.T) {
	prev := idleTimeout
	idleTimeout = 200 * time.Millisecond
	t.Cleanup(func() { idleTimeout = prev })
	p := NewPool("commands", 1, Limits{Timeout: 20 * time.Second})
	t.Cleanup(p.Close)
	first, err := p.Run(context.Background(), []byte("pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(first))
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the idle worker %d still runs", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	next, err := p.Run(context.Background(), []byte("pid"))
	if err != nil {
		t.Fatal(err)
	}
	if string(next) == string(first) {
		t.Errorf("the next call ran in the ended worker %s", first)
	}
}
