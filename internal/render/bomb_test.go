package render_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/render"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/render/isolated"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// smallBudgets makes bombs end quickly; the budgets are far above what the fixture charts need,
// so a correct chart never hits them even on a loaded machine.
func smallBudgets(t *testing.T) {
	t.Helper()
	prev := render.CurrentLimits()
	render.SetLimits(render.Limits{Timeout: 10 * time.Second, MaxOutputBytes: 1 << 20, MaxMemoryBytes: 64 << 20, Concurrency: 2})
	t.Cleanup(func() { render.SetLimits(prev) })
}

func hostileChart(stack string) string {
	return filepath.Join(testenv.RepoRoot(), "test", "fixtures", "stacks", stack, "cluster-class")
}

// TestChartBombs renders each hostile chart and checks that it ends with the error of the budget
// it exceeds, naming the chart and the flag that sets the budget.
func TestChartBombs(t *testing.T) {
	smallBudgets(t)
	for _, tc := range []struct {
		stack string
		want  error
		flag  string
	}{
		{"openstack-scs-bomb-until", render.ErrRenderMemory, render.MaxMemoryFlag},
		{"openstack-scs-bomb-nested", render.ErrRenderTimeout, render.TimeoutFlag},
		{"openstack-scs-bomb-output", render.ErrRenderTooLarge, render.MaxOutputBytesFlag},
	} {
		t.Run(tc.stack, func(t *testing.T) {
			_, err := render.Chart(context.Background(), hostileChart(tc.stack), render.Options{ReleaseName: "openstack-scs-1-32", Namespace: "ns", KubeVersion: "v1.32.5"})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !render.IsBudgetError(err) {
				t.Errorf("IsBudgetError(%v) = false", err)
			}
			for _, s := range []string{"chart openstack-scs-cluster-class", "--" + tc.flag} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			// The bomb ended only its worker: the next rendering succeeds.
			if _, err := render.ValuesTemplate([]byte("ok: true"), map[string]any{"after": tc.stack}); err != nil {
				t.Errorf("rendering after the bomb: %v", err)
			}
		})
	}
}

// TestWorkerServesManyRenderings checks that renderings one after the other do not start a
// process each.
func TestWorkerServesManyRenderings(t *testing.T) {
	smallBudgets(t) // fresh workers
	before := isolated.Starts()
	for i := range 20 {
		got, err := render.ValuesTemplate([]byte("count: {{ .count }}"), map[string]any{"count": i})
		if err != nil {
			t.Fatal(err)
		}
		if got["count"] != float64(i) {
			t.Fatalf("values %v, want count: %d", got, i)
		}
	}
	if started := isolated.Starts() - before; started != 1 {
		t.Errorf("20 renderings started %d worker processes, want 1", started)
	}
}

// TestChartRecursiveInclude checks that the ~100 KB error of a template including itself comes
// back short, naming the template where it started and the innermost cause.
func TestChartRecursiveInclude(t *testing.T) {
	// The recursion holds about 60 MiB in use, but with the garbage the collector has not reached
	// yet a loaded machine sometimes sees the default 128 MiB budget end it first; that ending is
	// TestChartBombs' subject. This test is about Helm's recursion error, so its budget has room.
	prev := render.CurrentLimits()
	roomy := prev
	roomy.MaxMemoryBytes = 4 * render.DefaultLimits.MaxMemoryBytes
	render.SetLimits(roomy)
	t.Cleanup(func() { render.SetLimits(prev) })
	_, err := render.Chart(context.Background(), hostileChart("openstack-scs-bomb-include"), render.Options{ReleaseName: "openstack-scs-1-32", Namespace: "ns"})
	if err == nil {
		t.Fatal("rendering a recursive include succeeded")
	}
	msg := err.Error()
	t.Logf("%d bytes: %s", len(msg), msg)
	for _, s := range []string{"templates/bomb.yaml", "bomb.loop", "repeats"} {
		if !strings.Contains(msg, s) {
			t.Errorf("error does not mention %q: %.2000s", s, msg)
		}
	}
	if len(msg) > 8<<10 {
		t.Errorf("error is %d bytes long: repeated frames were not collapsed: %.2000s", len(msg), msg)
	}
}

func TestValuesTemplateBombs(t *testing.T) {
	smallBudgets(t)
	for name, tc := range map[string]struct {
		tpl  string
		want error
	}{
		"nested until": {`{{ range until 100000 }}{{ range until 100000 }}{{ end }}{{ end }}`, render.ErrRenderTimeout},
		"until":        {`{{ range until 20000000 }}{{ end }}`, render.ErrRenderMemory},
		"output":       {`x: {{ repeat 2000000 "x" }}`, render.ErrRenderTooLarge},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := render.ValuesTemplate([]byte(tc.tpl), nil)
			if !errors.Is(err, tc.want) || !errors.Is(err, render.ErrValuesTemplate) {
				t.Fatalf("err = %v, want %v and %v", err, tc.want, render.ErrValuesTemplate)
			}
		})
	}
}

// TestValuesTemplateKeepsIntegers checks that the objects given to a values template keep their
// integers across the rendering process: text/template's eq refuses to compare a float with an
// integer constant.
func TestValuesTemplateKeepsIntegers(t *testing.T) {
	got, err := render.ValuesTemplate([]byte(`ok: {{ eq .Cluster.port 6443 }}`), map[string]any{"Cluster": map[string]any{"port": int64(6443)}})
	if err != nil {
		t.Fatal(err)
	}
	if got["ok"] != true {
		t.Errorf("values = %v, want ok: true", got)
	}
}
