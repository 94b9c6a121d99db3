package config_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	gostrings "strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	// The packages that register metrics when the manager starts, as main.go imports them.
	_ "github.com/seed-a720dd5e/clusterstack-operator/internal/hooks"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/metrics"
	_ "github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
	_ "github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
)

// TestDefaultOverlayMetrics checks that the default install serves metrics securely and that
// its pieces fit: the manager's port, the Service in front of it, and the roles the manager and
// a scraper need.
func TestDefaultOverlayMetrics(t *testing.T) {
	m := render(t, "default")
	deploy := find(t, m, "Deployment", "clusterstack-controller-manager")
	pod := get(deploy, "spec", "template", "spec").(map[string]any)
	container := get(pod, "containers", 0).(map[string]any)
	args := strings(container["args"])
	if !slices.Contains(args, "--metrics-bind-address=:8443") {
		t.Errorf("manager args %v lack --metrics-bind-address=:8443", args)
	}
	for _, a := range args {
		if gostrings.HasPrefix(a, "--metrics-secure") {
			t.Errorf("manager args hold %s: the default install serves metrics securely (the flag's default)", a)
		}
	}
	var metricsPort any
	for _, p := range get(container, "ports").([]any) {
		if get(p.(map[string]any), "name") == "metrics" {
			metricsPort = get(p.(map[string]any), "containerPort")
		}
	}
	if fmt.Sprint(metricsPort) != "8443" {
		t.Errorf("the manager's metrics container port is %v, want 8443 (the bind address)", metricsPort)
	}

	svc := find(t, m, "Service", "clusterstack-controller-manager-metrics-service")
	podLabels := get(deploy, "spec", "template", "metadata", "labels").(map[string]any)
	for k, v := range get(svc, "spec", "selector").(map[string]any) {
		if podLabels[k] != v {
			t.Errorf("the metrics Service selects %s=%v, which the manager's pods (%v) lack", k, v, podLabels)
		}
	}
	if got := get(svc, "spec", "ports", 0, "targetPort"); got != "metrics" {
		t.Errorf("the metrics Service targets port %v, want the manager's port named metrics", got)
	}

	sa := get(pod, "serviceAccountName")
	binding := find(t, m, "ClusterRoleBinding", "clusterstack-metrics-auth-rolebinding")
	subject := get(binding, "subjects", 0).(map[string]any)
	if subject["name"] != sa || subject["namespace"] != "clusterstack-system" {
		t.Errorf("metrics-auth-rolebinding binds %v, want the manager's ServiceAccount %v in clusterstack-system", subject, sa)
	}
	authRole := get(binding, "roleRef", "name").(string)
	wantRules := map[string][]any{
		authRole:                      {map[string]any{"apiGroups": []any{"authentication.k8s.io"}, "resources": []any{"tokenreviews"}, "verbs": []any{"create"}}, map[string]any{"apiGroups": []any{"authorization.k8s.io"}, "resources": []any{"subjectaccessreviews"}, "verbs": []any{"create"}}},
		"clusterstack-metrics-reader": {map[string]any{"nonResourceURLs": []any{"/metrics"}, "verbs": []any{"get"}}},
	}
	for name, want := range wantRules {
		if diff := cmp.Diff(want, get(find(t, m, "ClusterRole", name), "rules")); diff != "" {
			t.Errorf("ClusterRole %s rules (-want +got):\n%s", name, diff)
		}
	}
}

// TestPrometheusOverlay checks that the ServiceMonitor scrapes the metrics Service of the default
// install and that every alert rule asks for metrics the operator exports, with their labels.
func TestPrometheusOverlay(t *testing.T) {
	m := render(t, "prometheus")
	svc := find(t, render(t, "default"), "Service", "clusterstack-controller-manager-metrics-service")
	mon := find(t, m, "ServiceMonitor", "clusterstack-controller-manager-metrics-monitor")
	if got, want := get(mon, "metadata", "namespace"), get(svc, "metadata", "namespace"); got != want {
		t.Errorf("the ServiceMonitor is in namespace %v, the metrics Service in %v", got, want)
	}
	svcLabels := get(svc, "metadata", "labels").(map[string]any)
	for k, v := range get(mon, "spec", "selector", "matchLabels").(map[string]any) {
		if svcLabels[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%v, which the metrics Service (%v) lacks", k, v, svcLabels)
		}
	}
	endpoint := get(mon, "spec", "endpoints", 0).(map[string]any)
	if endpoint["port"] != get(svc, "spec", "ports", 0, "name") || endpoint["scheme"] != "https" || endpoint["bearerTokenFile"] == nil {
		t.Errorf("the ServiceMonitor endpoint %v does not scrape the Service's port %v over HTTPS with a token", endpoint, get(svc, "spec", "ports", 0, "name"))
	}

	registered := registeredMetrics(t)
	rules := 0
	for _, g := range get(find(t, m, "PrometheusRule", "clusterstack-alerts"), "spec", "groups").([]any) {
		for _, r := range get(g.(map[string]any), "rules").([]any) {
			rule := r.(map[string]any)
			rules++
			if rule["alert"] == nil || rule["expr"] == nil || get(rule, "labels", "severity") == nil || get(rule, "annotations", "summary") == nil {
				t.Errorf("rule %v lacks an alert name, expr, severity or summary", rule)
				continue
			}
			checkExpr(t, registered, rule["alert"].(string), rule["expr"].(string))
		}
	}
	if rules < 5 {
		t.Errorf("found %d alert rules, want the stuck release, failed image, stalled addon, blocking hook and stalled ClusterStack ones", rules)
	}
}

// TestGrafanaOverlay checks that the dashboard is a ConfigMap Grafana's sidecar loads, that it
// parses, and that every panel's query asks for metrics the operator exports.
func TestGrafanaOverlay(t *testing.T) {
	m := render(t, "grafana")
	cm := find(t, m, "ConfigMap", "clusterstack-grafana-dashboard")
	if get(cm, "metadata", "labels", "grafana_dashboard") != "1" {
		t.Errorf("the dashboard ConfigMap lacks the label grafana_dashboard=1 that Grafana's sidecar looks for")
	}
	data := get(cm, "data").(map[string]any)
	if len(data) != 1 {
		t.Fatalf("the dashboard ConfigMap holds %d keys, want one dashboard", len(data))
	}
	var dashboard struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	for _, v := range data {
		if err := json.Unmarshal([]byte(v.(string)), &dashboard); err != nil {
			t.Fatalf("parsing the dashboard: %v", err)
		}
	}
	registered := registeredMetrics(t)
	queries := 0
	for _, p := range dashboard.Panels {
		for _, target := range p.Targets {
			queries++
			// Dashboard variables ($namespace) stand for label values.
			checkExpr(t, registered, "panel "+p.Title, gostrings.ReplaceAll(target.Expr, "$", ""))
		}
	}
	if queries == 0 {
		t.Errorf("dashboard %q has no queries", dashboard.Title)
	}
}

// targetLabels are the labels Prometheus adds to every series scraped through a ServiceMonitor.
var targetLabels = []string{"namespace", "job", "instance", "pod", "service", "endpoint", "container"}

// registeredMetrics returns the label names of every metric the manager exports, by name: those
// registered with controller-runtime's registry (controller-runtime's own and the operator
// packages' that main.go imports) and the state gauges, which main.go registers.
func registeredMetrics(t *testing.T) map[string][]string {
	t.Helper()
	reg, ok := ctrlmetrics.Registry.(*prometheus.Registry)
	if !ok {
		t.Fatalf("controller-runtime's registry is a %T, not a *prometheus.Registry", ctrlmetrics.Registry)
	}
	ch := make(chan *prometheus.Desc)
	go func() {
		reg.Describe(ch)
		metrics.NewStateCollector(nil).Describe(ch)
		close(ch)
	}()
	// A Desc shows its name and labels only in its String form.
	desc := regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)
	out := map[string][]string{}
	for d := range ch {
		parts := desc.FindStringSubmatch(d.String())
		if parts == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		var labels []string
		for l := range gostrings.SplitSeq(parts[2], ",") {
			if l = gostrings.TrimSuffix(gostrings.TrimPrefix(gostrings.TrimSpace(l), "c("), ")"); l != "" {
				labels = append(labels, l)
			}
		}
		out[parts[1]] = labels
	}
	if _, ok := out["controller_runtime_reconcile_errors_total"]; !ok {
		t.Fatalf("controller-runtime's reconcile metrics are not in the registry: %v", out)
	}
	return out
}

// checkExpr reports every metric expr names that the manager does not export, and every label it
// matches or groups by that those metrics do not have.
func checkExpr(t *testing.T, registered map[string][]string, what, expr string) {
	t.Helper()
	sel := parseSelectors(expr)
	if len(sel.metrics) == 0 {
		t.Errorf("%s: no metric in %q", what, expr)
	}
	var all []string
	for _, s := range sel.metrics {
		labels, ok := registered[s.name]
		if !ok {
			// A histogram's series.
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, cut := gostrings.CutSuffix(s.name, suffix); cut {
					labels, ok = registered[base]
					if suffix == "_bucket" {
						labels = append(slices.Clone(labels), "le")
					}
					break
				}
			}
		}
		if !ok {
			t.Errorf("%s: %q names %s, which the manager does not export", what, expr, s.name)
			continue
		}
		labels = append(slices.Clone(labels), targetLabels...)
		for _, l := range s.labels {
			if !slices.Contains(labels, l) {
				t.Errorf("%s: %q matches label %s, which %s does not have (%v)", what, expr, l, s.name, labels)
			}
		}
		all = append(all, labels...)
	}
	for _, l := range sel.grouping {
		if !slices.Contains(all, l) {
			t.Errorf("%s: %q groups by %s, which none of its metrics has", what, expr, l)
		}
	}
}

type selector struct {
	name   string
	labels []string
}

type selectors struct {
	metrics  []selector
	grouping []string
}

var (
	stringLiteral = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	matchers      = regexp.MustCompile(`\{([^}]*)\}`)
	matcherLabel  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	grouping      = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	ranges        = regexp.MustCompile(`\[[^\]]*\]`)
	token         = regexp.MustCompile(`\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*|[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?(\{)?`)
	keywords      = []string{"and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"}
)

// parseSelectors finds the metric names of a PromQL expression with the labels each is matched
// on, and the labels it groups by. The module has no PromQL parser; this reads what alert rules
// and dashboard queries use (selectors, functions, aggregations with by/without, binary
// operators with on/ignoring) and is tested below.
func parseSelectors(expr string) selectors {
	var out selectors
	expr = stringLiteral.ReplaceAllString(expr, `""`)
	for _, g := range grouping.FindAllStringSubmatch(expr, -1) {
		for l := range gostrings.SplitSeq(g[1], ",") {
			if l = gostrings.TrimSpace(l); l != "" {
				out.grouping = append(out.grouping, l)
			}
		}
	}
	expr = grouping.ReplaceAllString(expr, " ")
	expr = ranges.ReplaceAllString(expr, " ")
	var labelSets [][]string
	for _, m := range matchers.FindAllStringSubmatch(expr, -1) {
		var labels []string
		for _, l := range matcherLabel.FindAllStringSubmatch(m[1], -1) {
			labels = append(labels, l[1])
		}
		labelSets = append(labelSets, labels)
	}
	expr = matchers.ReplaceAllString(expr, "{}")
	for _, tok := range token.FindAllStringSubmatch(expr, -1) {
		name := gostrings.TrimSuffix(tok[0], "{")
		switch {
		case tok[1] != "": // a function or aggregation
		case name[0] >= '0' && name[0] <= '9': // a number or duration
		case slices.Contains(keywords, name):
		default:
			s := selector{name: name}
			if tok[2] != "" {
				s.labels, labelSets = labelSets[0], labelSets[1:]
			}
			out.metrics = append(out.metrics, s)
			continue
		}
		if tok[2] != "" { // a selector without a name: {__name__=...}
			labelSets = labelSets[1:]
		}
	}
	return out
}

func TestParseSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want selectors
	}{
		{`up`, selectors{metrics: []selector{{name: "up"}}}},
		{`max by (namespace, reason) (clusterstack_objects_stalled{kind="ClusterStack"}) > 0`, selectors{
			metrics: []selector{{name: "clusterstack_objects_stalled", labels: []string{"kind"}}}, grouping: []string{"namespace", "reason"}}},
		{`sum(rate(a_total{x=~"a|b", y!="}"}[5m])) / ignoring(z) sum without (w) (b_total offset 1h) > 1e3`, selectors{
			metrics: []selector{{name: "a_total", labels: []string{"x", "y"}}, {name: "b_total"}}, grouping: []string{"z", "w"}}},
		{`histogram_quantile(0.99, sum by (le) (rate(d_seconds_bucket[10m]))) and on() vector(1)`, selectors{
			metrics: []selector{{name: "d_seconds_bucket"}}, grouping: []string{"le"}}},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, parseSelectors(tc.expr), cmp.AllowUnexported(selectors{}, selector{})); diff != "" {
				t.Errorf("parseSelectors (-want +got):\n%s", diff)
			}
		})
	}
}
