package e2e

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// managerProcess is the manager binary running as a subprocess, configured the way a deployment
// configures it: a kubeconfig, the default release source in the reference's environment
// variables, flags for every port and directory.
type managerProcess struct {
	cmd        *exec.Cmd
	logPath    string
	metricsURL string
	readyzURL  string
	// mgmtHost is the management API server's host:port, the host label of its requests.
	mgmtHost string
	// started is when the process was started.
	started time.Time
	exited  chan struct{}
	waitErr error
}

// managerConfig is what startManager needs from the scenario.
type managerConfig struct {
	dir        string // working directory, caches, certificates, log
	kubeconfig []byte // of the management API server
	mgmtHost   string
	registry   string // host:port of the plain-HTTP OCI registry
	repository string
	// driftInterval is --addon-drift-check-interval; zero keeps the manager's default.
	driftInterval time.Duration
}

// startManager starts the binary and waits until its readiness probe answers and its controllers
// have started their workers.
func startManager(tb testing.TB, bin string, cfg managerConfig) *managerProcess {
	tb.Helper()
	m := launchManager(tb, bin, cfg)
	m.waitReady(tb, time.Minute)
	m.waitControllersStarted(tb, time.Minute)
	return m
}

// launchManager starts the binary and returns at once.
func launchManager(tb testing.TB, bin string, cfg managerConfig) *managerProcess {
	tb.Helper()
	if err := os.MkdirAll(cfg.dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	kubeconfig := filepath.Join(cfg.dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, cfg.kubeconfig, 0o600); err != nil {
		tb.Fatal(err)
	}
	certDir := filepath.Join(cfg.dir, "certs")
	if err := writeServingCert(certDir); err != nil {
		tb.Fatal(err)
	}
	ports, err := freePorts(4)
	if err != nil {
		tb.Fatal(err)
	}
	logPath := filepath.Join(cfg.dir, "manager.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]),
		// The benchmarks scrape the counters over plain HTTP; the secure default is tested in
		// internal/metrics.
		"--metrics-secure=false",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--webhook-port=%d", ports[2]),
		fmt.Sprintf("--runtime-extension-port=%d", ports[3]),
		"--webhook-cert-dir="+certDir,
		"--release-cache-dir="+filepath.Join(cfg.dir, "cache", "releases"),
		"--leader-elect=false",
		// The registry, the file server and the OpenStack double listen on loopback, which the
		// egress policy refuses unless allowed.
		"--egress-allow-cidrs=127.0.0.0/8,::1/128",
	)
	// BENCH_E2E_PROFILER_ADDRESS serves the manager's profiler, to take heap and CPU profiles
	// while a benchmark runs (go tool pprof http://<address>/debug/pprof/heap).
	if cfg.driftInterval > 0 {
		cmd.Args = append(cmd.Args, "--addon-drift-check-interval="+cfg.driftInterval.String())
	}
	if addr := os.Getenv("BENCH_E2E_PROFILER_ADDRESS"); addr != "" {
		cmd.Args = append(cmd.Args, "--profiler-address="+addr)
	}
	if os.Getenv("BENCH_E2E_LOG_DIR") != "" {
		cmd.Args = append(cmd.Args, "--zap-time-encoding=rfc3339nano", "--zap-log-level=4")
	}
	// BENCH_E2E_MANAGER_ARGS adds flags (space-separated) to the manager, to compare settings
	// (--qps, the --*-concurrency flags) in one benchmark run each.
	cmd.Args = append(cmd.Args, strings.Fields(os.Getenv("BENCH_E2E_MANAGER_ARGS"))...)
	cmd.Dir = cfg.dir
	// http:// selects plain HTTP for the registry (source.FromEnv).
	cmd.Env = append(hostEnv(), "KUBECONFIG="+kubeconfig, "OCI_REGISTRY=http://"+cfg.registry, "OCI_REPOSITORY="+cfg.repository)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	started := time.Now()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		tb.Fatalf("starting the manager: %v", err)
	}
	m := &managerProcess{
		cmd:        cmd,
		logPath:    logPath,
		metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[0]),
		readyzURL:  fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1]),
		mgmtHost:   cfg.mgmtHost,
		started:    started,
		exited:     make(chan struct{}),
	}
	go func() {
		m.waitErr = cmd.Wait()
		logFile.Close()
		close(m.exited)
	}()
	tb.Cleanup(m.stop)
	return m
}

// waitReady waits until the readiness probe answers OK (the caches of every watched kind have
// synced) and returns when it first did.
func (m *managerProcess) waitReady(tb testing.TB, limit time.Duration) time.Time {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for {
		if err := m.alive(); err != nil {
			tb.Fatal(err)
		}
		resp, err := http.Get(m.readyzURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now()
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the manager is not ready after %s (last: %v)\n%s", limit, err, m.logTail(40))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitControllersStarted waits until every controller has started its workers, so that the first
// measurement does not include the manager's start-up. The readiness probe answers once the caches
// have synced, a moment before the workers start; the log is the only outside view of that.
func (m *managerProcess) waitControllersStarted(tb testing.TB, limit time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for {
		if err := m.alive(); err != nil {
			tb.Fatal(err)
		}
		data, err := os.ReadFile(m.logPath)
		if err != nil {
			tb.Fatal(err)
		}
		controllers := bytes.Count(data, []byte(`"Starting Controller"`))
		workers := bytes.Count(data, []byte(`"Starting workers"`))
		if controllers > 0 && workers == controllers {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d controllers started their workers after %s\n%s", workers, controllers, limit, m.logTail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive returns an error with the end of the log when the manager has exited.
func (m *managerProcess) alive() error {
	select {
	case <-m.exited:
		return fmt.Errorf("the manager exited (%v)\n%s", m.waitErr, m.logTail(60))
	default:
		return nil
	}
}

// stop ends the manager (SIGTERM, then SIGKILL after a grace period); safe to call twice.
func (m *managerProcess) stop() {
	select {
	case <-m.exited:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	// BENCH_E2E_LOG_DIR keeps the manager's log (the run's temporary directory is removed), to
	// read what the manager did and when.
	if dir := os.Getenv("BENCH_E2E_LOG_DIR"); dir != "" {
		if data, err := os.ReadFile(m.logPath); err == nil {
			_ = os.MkdirAll(dir, 0o755)
			_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("manager-%d.log", m.cmd.Process.Pid)), data, 0o644)
		}
	}
}

// logTail returns the last n lines of the manager's log.
func (m *managerProcess) logTail(n int) string {
	f, err := os.Open(m.logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// counters are the manager's own request counters, from its metrics endpoint.
type counters struct {
	// mgmtWrites and mgmtReads are requests to the management API server; workloadWrites and
	// workloadReads those to every other API server (the workload clusters).
	mgmtWrites, mgmtReads, workloadWrites, workloadReads float64
	// mgmtRefused are answers 429 (Too Many Requests) from the management API server.
	mgmtRefused float64
	// openstack is clusterstack_openstack_requests_total over every service and operation.
	openstack float64
	// workloadHosts are the requests to each workload API server, by host.
	workloadHosts map[string]float64
	// heapInuse and goSys are the Go runtime's go_memstats_heap_inuse_bytes and
	// go_memstats_sys_bytes (memory obtained from the OS), to tell heap from the rest of the RSS.
	heapInuse, goSys float64
}

func (c counters) writes() float64 { return c.mgmtWrites + c.workloadWrites }

func (c counters) requests() float64 {
	return c.mgmtWrites + c.mgmtReads + c.workloadWrites + c.workloadReads
}

func (c counters) workloadRequests() float64 { return c.workloadWrites + c.workloadReads }

func (c counters) sub(o counters) counters {
	return counters{
		mgmtWrites: c.mgmtWrites - o.mgmtWrites, mgmtReads: c.mgmtReads - o.mgmtReads,
		workloadWrites: c.workloadWrites - o.workloadWrites, workloadReads: c.workloadReads - o.workloadReads,
		openstack: c.openstack - o.openstack,
	}
}

// scrape reads the counters from the manager's Prometheus endpoint: client-go's
// rest_client_requests_total (labels code, host, method) and the operator's OpenStack counter.
func (m *managerProcess) scrape() (counters, error) {
	resp, err := http.Get(m.metricsURL)
	if err != nil {
		return counters{}, fmt.Errorf("reading the manager's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return counters{}, fmt.Errorf("reading the manager's metrics: HTTP %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return counters{}, fmt.Errorf("parsing the manager's metrics: %w", err)
	}
	var c counters
	if f := families["rest_client_requests_total"]; f != nil {
		for _, s := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			v := s.GetCounter().GetValue()
			read := labels["method"] == http.MethodGet || labels["method"] == http.MethodHead
			mgmt := labels["host"] == m.mgmtHost
			if !mgmt {
				if c.workloadHosts == nil {
					c.workloadHosts = map[string]float64{}
				}
				c.workloadHosts[labels["host"]] += v
			}
			if mgmt && labels["code"] == strconv.Itoa(http.StatusTooManyRequests) {
				c.mgmtRefused += v
			}
			switch {
			case mgmt && read:
				c.mgmtReads += v
			case mgmt:
				c.mgmtWrites += v
			case read:
				c.workloadReads += v
			default:
				c.workloadWrites += v
			}
		}
	}
	if f := families["clusterstack_openstack_requests_total"]; f != nil {
		for _, s := range f.GetMetric() {
			c.openstack += s.GetCounter().GetValue()
		}
	}
	gauge := func(name string) float64 {
		if f := families[name]; f != nil && len(f.GetMetric()) > 0 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
		return 0
	}
	c.heapInuse, c.goSys = gauge("go_memstats_heap_inuse_bytes"), gauge("go_memstats_sys_bytes")
	return c, nil
}

// memory returns the peak (VmHWM) and current (VmRSS) resident set size of the manager in MiB.
func (m *managerProcess) memory() (peak, current float64, err error) {
	v, err := m.status("VmHWM", "VmRSS")
	if err != nil {
		return 0, 0, err
	}
	return v[0], v[1], nil
}

// rssSplit returns the anonymous (heap, stacks) and file-backed (the binary's mapped pages) parts
// of the current RSS in MiB.
func (m *managerProcess) rssSplit() (anon, file float64, err error) {
	v, err := m.status("RssAnon", "RssFile")
	if err != nil {
		return 0, 0, err
	}
	return v[0], v[1], nil
}

// status reads fields given in kB from /proc/<pid>/status, in MiB.
func (m *managerProcess) status(names ...string) ([]float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return nil, fmt.Errorf("reading the manager's memory: %w", err)
	}
	fields := map[string]string{}
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	out := make([]float64, len(names))
	for i, n := range names {
		v, ok := fields[n]
		if !ok {
			return nil, fmt.Errorf("no %s in /proc/%d/status", n, m.cmd.Process.Pid)
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64)
		if err != nil {
			return nil, fmt.Errorf("parsing %s in /proc/%d/status: %w", n, m.cmd.Process.Pid, err)
		}
		out[i] = kb / 1024
	}
	return out, nil
}

// hostEnv is this process's environment without the settings that would point the manager at
// another cluster or release source than the scenario's, or tune its garbage collector.
func hostEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		// GOGC and GOMEMLIMIT change the memory figures: the manager gets the Deployment's
		// values (deploymentGoEnv), never the host's.
		if k == "KUBECONFIG" || k == "GOGC" || k == "GOMEMLIMIT" || strings.HasPrefix(k, "OCI_") || strings.HasPrefix(k, "GIT_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, deploymentGoEnv()...)
}

// deploymentGoEnv returns the Go runtime settings (GOGC, GOMEMLIMIT) of the manager container in
// config/manager/manager.yaml, so that the benchmark measures the manager as it is deployed.
// GOMEMLIMIT comes from the container's memory limit there (resourceFieldRef).
func deploymentGoEnv() []string {
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "manager", "manager.yaml"))
	if err != nil {
		panic(err)
	}
	var out []string
	for _, doc := range strings.Split(string(data), "\n---") {
		var d struct {
			Kind string `json:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Env []struct {
								Name      string `json:"name"`
								Value     string `json:"value"`
								ValueFrom *struct {
									ResourceFieldRef *struct {
										Resource string `json:"resource"`
									} `json:"resourceFieldRef"`
								} `json:"valueFrom"`
							} `json:"env"`
							Resources struct {
								Limits map[string]string `json:"limits"`
							} `json:"resources"`
						} `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil || d.Kind != "Deployment" {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				switch {
				case e.Name != "GOGC" && e.Name != "GOMEMLIMIT":
				case e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory":
					q := resource.MustParse(c.Resources.Limits["memory"])
					out = append(out, fmt.Sprintf("%s=%d", e.Name, q.Value()))
				default:
					out = append(out, e.Name+"="+e.Value)
				}
			}
		}
	}
	return out
}

// freePorts returns n distinct ports that were free a moment ago on the loopback interface.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeServingCert writes a self-signed certificate for 127.0.0.1 and localhost as
// tls.crt/tls.key: the webhook and runtime-extension servers need one to start. No API server
// calls them (the control plane has no webhook configuration), so nobody has to trust it.
func writeServingCert(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clusterstack-operator-e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return errors.Join(
		os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600),
		os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600),
	)
}
