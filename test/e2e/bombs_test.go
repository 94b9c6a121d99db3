package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
)

// bombs are the hostile fixture stacks and what each release must say in the end.
var bombs = []struct {
	source string
	says   string
}{
	{"openstack-scs-bomb-until", "memory budget"},
	{"openstack-scs-bomb-nested", "time budget"},
	{"openstack-scs-bomb-output", "output budget"},
	{"openstack-scs-bomb-include", "bomb.loop"},
}

// BenchmarkRenderBombs runs the manager binary as deployed (default --render-* budgets, the
// Deployment's GOGC and GOMEMLIMIT) and gives it, at once, one release of each render bomb
// (`range until 200000000`, nested `until`, 12 MB of objects, a recursive include), each in its
// own namespace and registry repository. It waits until every release is Stalled with
// InvalidRelease and the message of its budget, while sampling every 10 ms the memory of the
// manager plus its rendering processes, and reports:
//   - MiB-peak-rss-with-renders: the largest sum of the manager's VmRSS and the VmHWM of every
//     rendering process alive at that moment (VmHWM: a child's peak between two samples counts);
//   - MiB-peak-rss: the manager's own VmHWM; MiB-peak-render: the largest child's VmHWM;
//   - renders: rendering worker processes seen (each bomb ends its worker).
//
// It fails when the sum reaches the Deployment's memory limit.
func BenchmarkRenderBombs(b *testing.B) {
	for i := 0; i < b.N; i++ {
		runRenderBombs(b)
	}
}

func runRenderBombs(b *testing.B) {
	s := newScenario(b, scenarioOptions{workloadServers: -1})
	defer s.close()
	ctx := context.Background()

	sampler := startMemorySampler(s.mgr.cmd.Process.Pid, 10*time.Millisecond)
	defer sampler.stop()

	for i, bomb := range bombs {
		dir, err := fixtures.Build(filepath.Join(s.dir, "bombs", strconv.Itoa(i)), fixtures.Options{Source: bomb.source})
		if err != nil {
			b.Fatal(err)
		}
		repo := "bombs/" + strings.TrimPrefix(bomb.source, "openstack-scs-")
		if _, err := fixtures.Push(ctx, dir, s.registry+"/"+repo, "openstack-scs-1-32-v1", true); err != nil {
			b.Fatal(err)
		}
		ns := fmt.Sprintf("bomb-%d", i)
		if err := s.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			b.Fatal(err)
		}
		cs := &clusterstackv1alpha1.ClusterStack{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: stackName},
			Spec: clusterstackv1alpha1.ClusterStackSpec{
				Provider: "openstack", Name: "scs", KubernetesVersion: "1.32", Channel: "stable",
				Versions: []string{"v1"}, NoProvider: true,
				Source: &clusterstackv1alpha1.ReleaseSource{OCI: &clusterstackv1alpha1.OCISource{
					Registry: s.registry, Repository: repo, Insecure: true,
				}},
			},
		}
		if err := s.c.Create(ctx, cs); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	s.waitFor("every bomb Stalled", readyLimit, 200*time.Millisecond, func(ctx context.Context) (bool, string, error) {
		var pending []string
		for i, bomb := range bombs {
			csr := &clusterstackv1alpha1.ClusterStackRelease{}
			if err := s.c.Get(ctx, client.ObjectKey{Namespace: fmt.Sprintf("bomb-%d", i), Name: "openstack-scs-1-32-v1"}, csr); err != nil {
				pending = append(pending, fmt.Sprintf("%s: %v", bomb.source, err))
				continue
			}
			var stalled metav1.Condition
			for _, c := range csr.Status.Conditions {
				if c.Type == clusterstackv1alpha1.StalledCondition {
					stalled = c
				}
			}
			if stalled.Status != metav1.ConditionTrue || stalled.Reason != clusterstackv1alpha1.InvalidReleaseReason || !strings.Contains(stalled.Message, bomb.says) {
				pending = append(pending, fmt.Sprintf("%s: Stalled %s %s %.300s", bomb.source, stalled.Status, stalled.Reason, stalled.Message))
			}
		}
		return len(pending) == 0, strings.Join(pending, "; "), nil
	})
	stalled := time.Since(start)
	sampler.stop()

	peak, _, err := s.mgr.memory()
	if err != nil {
		b.Fatal(err)
	}
	limit := deploymentMemoryLimit()
	b.Logf("every bomb Stalled after %.1fs; peak RSS: manager %.1f MiB, manager plus renders %.1f MiB (limit %.0f MiB), largest render %.1f MiB, %d renders",
		stalled.Seconds(), peak, sampler.peakSum(), limit, sampler.peakChild(), sampler.children())
	if sampler.peakSum() >= limit {
		b.Errorf("the manager and its renders reached %.1f MiB, the Deployment's limit is %.0f MiB", sampler.peakSum(), limit)
	}
	suppressProcessMetrics(b)
	b.ReportMetric(stalled.Seconds(), "s/bombs-stalled")
	b.ReportMetric(sampler.peakSum(), "MiB-peak-rss-with-renders")
	b.ReportMetric(peak, "MiB-peak-rss")
	b.ReportMetric(sampler.peakChild(), "MiB-peak-render")
	b.ReportMetric(float64(sampler.children()), "renders")
}

// deploymentMemoryLimit is the manager container's memory limit in MiB (config/manager).
func deploymentMemoryLimit() float64 {
	for _, kv := range deploymentGoEnv() {
		if v, ok := strings.CutPrefix(kv, "GOMEMLIMIT="); ok {
			q := resource.MustParse(v)
			return float64(q.Value()) / (1 << 20)
		}
	}
	panic("no GOMEMLIMIT in config/manager/manager.yaml")
}

// memorySampler samples the RSS of a process and its children.
type memorySampler struct {
	pid  int
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup

	mu       sync.Mutex
	sum      float64 // largest manager VmRSS + children VmHWM
	child    float64 // largest child VmHWM
	kids     float64 // largest sum of the children's VmHWM
	kidsAnon float64 // largest sum of the children's RssAnon (what they do not share with the manager)
	seenPids map[int]bool
}

func startMemorySampler(pid int, every time.Duration) *memorySampler {
	m := &memorySampler{pid: pid, done: make(chan struct{}), seenPids: map[int]bool{}}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			m.sample()
			select {
			case <-m.done:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memorySampler) sample() {
	own := procStatusMiB(m.pid, "VmRSS")
	var largest, kidsHWM, kidsAnon float64
	kids := childPids(m.pid)
	for _, c := range kids {
		hwm := procStatusMiB(c, "VmHWM")
		kidsHWM += hwm
		kidsAnon += procStatusMiB(c, "RssAnon")
		largest = max(largest, hwm)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range kids {
		m.seenPids[c] = true
	}
	m.sum = max(m.sum, own+kidsHWM)
	m.child = max(m.child, largest)
	m.kids = max(m.kids, kidsHWM)
	m.kidsAnon = max(m.kidsAnon, kidsAnon)
}

// peakChildren returns the largest sum of the children's VmHWM and of their RssAnon seen.
func (m *memorySampler) peakChildren() (hwm, anon float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.kids, m.kidsAnon
}

func (m *memorySampler) stop() {
	m.once.Do(func() { close(m.done) })
	m.wg.Wait()
}

func (m *memorySampler) peakSum() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sum
}

func (m *memorySampler) peakChild() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.child
}

func (m *memorySampler) children() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.seenPids)
}

// childPids lists the children of pid from /proc/<pid>/task/*/children.
func childPids(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// procStatusMiB reads one kB field of /proc/<pid>/status in MiB; 0 when the process is gone.
func procStatusMiB(pid int, field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return 0
			}
			return kb / 1024
		}
	}
	return 0
}
