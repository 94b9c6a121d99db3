package outcome

import (
	"errors"
	"fmt"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
)

func TestResult(t *testing.T) {
	boom := errors.New("boom")
	tests := map[string]struct {
		res     ctrl.Result
		err     error
		want    ctrl.Result
		wantErr error
		settled bool
	}{
		"done":                       {res: ctrl.Result{RequeueAfter: time.Minute}, want: ctrl.Result{RequeueAfter: time.Minute}, settled: true},
		"stalled waits for an event": {err: Stall("Bad", "fix it"), settled: true},
		"stalled retries":            {err: StallRetry("Forbidden", time.Minute, "grant it"), want: ctrl.Result{RequeueAfter: time.Minute}, settled: true},
		"wrapped stall":              {err: fmt.Errorf("step: %w", StallRetry("Bad", time.Hour, "x")), want: ctrl.Result{RequeueAfter: time.Hour}, settled: true},
		"waiting":                    {err: Wait("Images", 30*time.Second, "waiting"), want: ctrl.Result{RequeueAfter: 30 * time.Second}, settled: true},
		"earlier requeue wins":       {res: ctrl.Result{RequeueAfter: 10 * time.Second}, err: Wait("Images", time.Minute, "w"), want: ctrl.Result{RequeueAfter: 10 * time.Second}, settled: true},
		"step requeue when none":     {res: ctrl.Result{RequeueAfter: 10 * time.Second}, err: Stall("Bad", "x"), want: ctrl.Result{RequeueAfter: 10 * time.Second}, settled: true},
		"transient with reason":      {err: Retry("SourceError", boom), wantErr: boom},
		"plain error":                {err: boom, wantErr: boom},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Result(tt.res, tt.err)
			if got != tt.want {
				t.Errorf("result = %+v, want %+v", got, tt.want)
			}
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			if s := Settled(tt.err); s != tt.settled {
				t.Errorf("Settled = %v, want %v", s, tt.settled)
			}
		})
	}
}

func TestRetryNil(t *testing.T) {
	if err := Retry("X", nil); err != nil {
		t.Fatalf("Retry(nil) = %v, want nil", err)
	}
}

func TestAs(t *testing.T) {
	err := fmt.Errorf("applying: %w", Retry("ApplyFailed", errors.New("conflict")))
	tr, ok := AsTransient(err)
	if !ok || tr.Reason != "ApplyFailed" || tr.Error() != "conflict" {
		t.Fatalf("AsTransient = %+v, %v", tr, ok)
	}
	if _, ok := AsStalled(err); ok {
		t.Fatal("a transient error is not a stall")
	}
	if _, ok := AsWaiting(Stall("A", "b")); ok {
		t.Fatal("a stall is not a wait")
	}
}
