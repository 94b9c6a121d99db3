package render

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/singleflight"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/render/isolated"
)

// The names of the manager flags that set Limits; error messages name them, so that whoever reads
// a condition knows what to change if the chart is fine and the budget too small.
const (
	TimeoutFlag        = "render-timeout"
	MaxOutputBytesFlag = "render-max-output-bytes"
	MaxMemoryFlag      = "render-max-memory"
	ConcurrencyFlag    = "render-concurrency"
)

// Limits bound every rendering (chart or values template).
type Limits struct {
	// Timeout is how long one rendering may take.
	Timeout time.Duration
	// MaxOutputBytes bounds what one rendering returns (the objects, as JSON).
	MaxOutputBytes int64
	// MaxMemoryBytes bounds the memory of one rendering, above what its worker process holds
	// between renderings.
	MaxMemoryBytes int64
	// Concurrency is how many renderings run at once, and so how many worker processes there
	// are at most; the others wait. The manager's memory limit must hold the manager plus
	// Concurrency times MaxMemoryBytes (plus each worker's baseline, some MiB, and its binary
	// pages, which are shared with the manager's).
	Concurrency int
}

// DefaultLimits fit the Deployment's 512Mi memory limit: a manager at 70-150 MiB plus two
// renderings of at most 128 MiB each. Real SCS charts render in well under a second, in a few MiB,
// to well under a MiB of objects (the addons of the scs stack: 53 objects).
var DefaultLimits = Limits{
	Timeout:        30 * time.Second,
	MaxOutputBytes: 8 << 20,
	MaxMemoryBytes: 128 << 20,
	Concurrency:    2,
}

// Errors of a rendering that exceeded its budget: the chart (or values template) is at fault, or
// the budget is too small for it, and rendering it again gives the same result.
var (
	ErrRenderTimeout  = errors.New("rendering exceeded its time budget")
	ErrRenderTooLarge = errors.New("rendering exceeded its output budget")
	ErrRenderMemory   = errors.New("rendering exceeded its memory budget")
	// ErrRenderUnavailable means the rendering process could not be started or died without
	// an answer (e.g. killed by the kernel): not the chart's fault, worth retrying.
	ErrRenderUnavailable = errors.New("rendering process unavailable")
)

// IsBudgetError reports whether err is one of the budget errors.
func IsBudgetError(err error) bool {
	return errors.Is(err, ErrRenderTimeout) || errors.Is(err, ErrRenderTooLarge) || errors.Is(err, ErrRenderMemory)
}

// config is what SetLimits sets: the budgets, the workers that render within them, and the
// results rendered within them.
type config struct {
	limits Limits
	pool   *isolated.Pool
	cache  *resultCache
	// inFlight lets identical renderings that run at once (a ClusterStackRelease and its
	// OpenStackClusterStackRelease's capability check render the same chart) share one.
	inFlight singleflight.Group
}

var (
	configMu sync.Mutex
	current  = newConfig(DefaultLimits)
)

func newConfig(l Limits) *config {
	if l.Timeout <= 0 {
		l.Timeout = DefaultLimits.Timeout
	}
	if l.MaxOutputBytes <= 0 {
		l.MaxOutputBytes = DefaultLimits.MaxOutputBytes
	}
	if l.MaxMemoryBytes <= 0 {
		l.MaxMemoryBytes = DefaultLimits.MaxMemoryBytes
	}
	if l.Concurrency <= 0 {
		l.Concurrency = DefaultLimits.Concurrency
	}
	return &config{
		limits: l,
		pool:   isolated.NewPool(workerName, l.Concurrency, isolated.Limits{Timeout: l.Timeout, MaxOutputBytes: l.MaxOutputBytes, MaxMemoryBytes: l.MaxMemoryBytes}),
		cache:  newResultCache(cacheBytes),
	}
}

// SetLimits sets the budgets of every later rendering; zero fields take DefaultLimits'. The
// manager calls it once from its flags, tests to make bombs fail fast. Renderings already waiting
// or running keep the budgets they started with; the workers and cached results of the previous
// budgets are dropped (a result that fit the old budgets may not fit the new ones).
func SetLimits(l Limits) {
	c := newConfig(l)
	configMu.Lock()
	prev := current
	current = c
	configMu.Unlock()
	prev.pool.Close()
}

// StartWorkers starts the rendering workers of the current budgets in the background, so that
// the first renderings after the manager's start (every release and addon at once) do not each
// wait for a process start; unused, they end after some seconds.
func StartWorkers() {
	configMu.Lock()
	cfg := current
	configMu.Unlock()
	cfg.pool.Prestart(cfg.limits.Concurrency)
}

// CurrentLimits returns the budgets in effect.
func CurrentLimits() Limits {
	configMu.Lock()
	defer configMu.Unlock()
	return current.limits
}

// workerName is the name the rendering workers serve under (isolated.Serve).
const workerName = "clusterstack-render"

func init() {
	// Every binary that links this package can be its own renderer: the manager, and each test
	// binary. In a worker this never returns.
	isolated.Serve(workerName, serveChild)
}

// request is what the parent sends: exactly one of Chart and Values.
type request struct {
	Chart  *chartRequest  `json:"chart,omitempty"`
	Values *valuesRequest `json:"values,omitempty"`
}

type chartRequest struct {
	Files       []File         `json:"files"`
	ReleaseName string         `json:"releaseName"`
	Namespace   string         `json:"namespace"`
	KubeVersion string         `json:"kubeVersion"`
	Values      map[string]any `json:"values"`
	IncludeCRDs bool           `json:"includeCRDs"`
	APIVersions []string       `json:"apiVersions"`
}

type valuesRequest struct {
	Content []byte `json:"content"`
	// Data is decoded with Kubernetes' JSON rules (whole numbers as int64), as the objects it
	// holds were: a template comparing `.Cluster.spec...port` with 6443 must see an integer.
	Data json.RawMessage `json:"data"`
}

// response is what the child answers. An error of the chart is an answer, not a failure of the
// child: its text goes back with the sentinel it matched, so errors.Is works across processes.
type response struct {
	Objects []json.RawMessage `json:"objects,omitempty"`
	Values  map[string]any    `json:"values,omitempty"`
	Error   string            `json:"error,omitempty"`
	// ErrorKind names the sentinel Error matched: "kubeVersion" or "valuesTemplate".
	ErrorKind string `json:"errorKind,omitempty"`
}

// remoteError is an error the child reported, with the sentinel it matched there.
type remoteError struct {
	msg       string
	sentinels []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.sentinels }

func serveChild(in []byte) ([]byte, error) {
	var req request
	if err := json.Unmarshal(in, &req); err != nil {
		return nil, fmt.Errorf("reading the rendering request: %w", err)
	}
	var resp response
	var err error
	switch {
	case req.Chart != nil:
		c := req.Chart
		var objs []json.RawMessage
		objs, err = renderInProcessJSON(context.Background(), c.Files, Options{
			ReleaseName: c.ReleaseName,
			Namespace:   c.Namespace,
			KubeVersion: c.KubeVersion,
			Values:      c.Values,
			IncludeCRDs: c.IncludeCRDs,
			APIVersions: c.APIVersions,
		})
		resp.Objects = objs
	case req.Values != nil:
		data := map[string]any{}
		if len(req.Values.Data) > 0 {
			if err := utiljson.Unmarshal(req.Values.Data, &data); err != nil {
				return nil, fmt.Errorf("reading the values template's data: %w", err)
			}
		}
		resp.Values, err = valuesTemplate(req.Values.Content, data)
	default:
		return nil, fmt.Errorf("reading the rendering request: neither chart nor values")
	}
	if errors.Is(err, errRenderedTooLarge) {
		isolated.ExitOutputTooLarge()
	}
	if err != nil {
		resp.Error = compactFrames(err.Error())
		switch {
		case errors.Is(err, ErrIncompatibleKubeVersion):
			resp.ErrorKind = "kubeVersion"
		case errors.Is(err, ErrValuesExecution):
			resp.ErrorKind = "valuesExecution"
		case errors.Is(err, ErrValuesTemplate):
			resp.ErrorKind = "valuesTemplate"
		}
		resp.Objects, resp.Values = nil, nil
	}
	return json.Marshal(resp)
}

func renderInProcessJSON(ctx context.Context, files []File, opts Options) ([]json.RawMessage, error) {
	objs, err := renderInProcess(ctx, files, opts)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(objs))
	for i, o := range objs {
		b, err := o.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("encoding %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		out[i] = b
	}
	return out, nil
}

// runIsolated runs req in a worker within the current budgets, or answers it from the results
// of earlier identical requests; what names the chart or file for budget errors.
func runIsolated(ctx context.Context, what string, req request) (*response, error) {
	configMu.Lock()
	cfg := current
	configMu.Unlock()
	in, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encoding the rendering request for %s: %w", what, err)
	}
	// The request holds every input of the rendering (the chart's files, the options, the
	// values; map keys sorted by encoding/json), and rendering has no other: no network, no
	// cluster, no environment. Equal requests render equal results.
	key := sha256.Sum256(in)
	out, cached := cfg.cache.get(key)
	if cached {
		rendersTotal.WithLabelValues(resultCached).Inc()
	} else {
		out, err = cfg.render(ctx, what, key, in)
	}
	l := cfg.limits
	switch {
	case err == nil:
	case errors.Is(err, isolated.ErrTimeout):
		return nil, fmt.Errorf("%w: rendering %s did not finish within %s; a template loops too long (the manager's --%s flag sets this budget)", ErrRenderTimeout, what, l.Timeout, TimeoutFlag)
	case errors.Is(err, isolated.ErrOutputTooLarge):
		return nil, fmt.Errorf("%w: rendering %s produced more than %d bytes of objects (the manager's --%s flag sets this budget)", ErrRenderTooLarge, what, l.MaxOutputBytes, MaxOutputBytesFlag)
	case errors.Is(err, isolated.ErrMemory):
		return nil, fmt.Errorf("%w: rendering %s needed more than %d MiB of memory (the manager's --%s flag sets this budget)", ErrRenderMemory, what, l.MaxMemoryBytes>>20, MaxMemoryFlag)
	case ctx.Err() != nil:
		return nil, fmt.Errorf("rendering %s: %w", what, ctx.Err())
	default:
		return nil, fmt.Errorf("%w: rendering %s: %w", ErrRenderUnavailable, what, err)
	}
	var resp response
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("%w: rendering %s: reading the renderer's answer: %w", ErrRenderUnavailable, what, err)
	}
	if resp.Error != "" {
		var sentinels []error
		switch resp.ErrorKind {
		case "kubeVersion":
			sentinels = []error{ErrIncompatibleKubeVersion}
		case "valuesExecution":
			sentinels = []error{ErrValuesTemplate, ErrValuesExecution}
		case "valuesTemplate":
			sentinels = []error{ErrValuesTemplate}
		}
		return nil, &remoteError{msg: resp.Error, sentinels: sentinels}
	}
	if !cached {
		cfg.cache.add(key, out)
	}
	return &resp, nil
}

// render runs the request in a worker; identical requests that arrive while it runs share its
// answer. Only answers without an error of the chart are cached (by runIsolated, once it has
// read them): a chart error may depend on nothing but the request too, but the answer of a bad
// release is rare and small, and not caching it keeps the cache free of any doubt.
func (c *config) render(ctx context.Context, what string, key [sha256.Size]byte, in []byte) ([]byte, error) {
	for {
		v, err, shared := c.inFlight.Do(string(key[:]), func() (any, error) {
			start := time.Now()
			out, err := c.pool.Run(ctx, in)
			result := resultRendered
			if err != nil {
				result = resultFailed
			}
			rendersTotal.WithLabelValues(result).Inc()
			logr.FromContextOrDiscard(ctx).V(4).Info("Rendered in a worker process", "what", what, "duration", time.Since(start), "outputBytes", len(out), "error", err)
			return out, err
		})
		// A sharer's answer is its own but for the end of the context of the call that ran:
		// then this one renders (or waits) itself.
		if shared && err != nil && ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			continue
		}
		out, _ := v.([]byte)
		return out, err
	}
}
