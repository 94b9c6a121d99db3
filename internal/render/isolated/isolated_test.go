package isolated_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/render/isolated"
)

var sink [][]byte

// The test binary is its own child: each name below is a Func a test runs in a child.
func init() {
	isolated.Serve("echo", func(in []byte) ([]byte, error) { return in, nil })
	isolated.Serve("panic", func([]byte) ([]byte, error) { panic("boom") })
	isolated.Serve("sleep", func([]byte) ([]byte, error) { time.Sleep(time.Hour); return nil, nil })
	isolated.Serve("large", func([]byte) ([]byte, error) { return bytes.Repeat([]byte("x"), 1<<20), nil })
	// Many small live allocations: the watchdog sees them grow.
	isolated.Serve("grow", func([]byte) ([]byte, error) {
		for {
			sink = append(sink, bytes.Repeat([]byte("x"), 1<<20))
		}
	})
	// One allocation far over the budget, made faster than the watchdog samples: RLIMIT_DATA
	// stops it.
	isolated.Serve("huge", func([]byte) ([]byte, error) {
		b := make([]byte, 1<<30)
		for i := range b {
			b[i] = 1
		}
		return b[:1], nil
	})
}

func TestRun(t *testing.T) {
	limits := isolated.Limits{Timeout: 20 * time.Second, MaxOutputBytes: 64 << 10, MaxMemoryBytes: 64 << 20}
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
			out, err := isolated.Run(context.Background(), tc.name, []byte("hello"), tc.limits)
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
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	_, err := isolated.Run(ctx, "sleep", nil, isolated.Limits{Timeout: time.Minute})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
