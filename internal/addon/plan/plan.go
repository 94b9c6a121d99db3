// Package plan reads the addon plan of a cluster-stack release (clusteraddon.yaml: which chart to
// apply or delete at which lifecycle hook, and the CEL conditions to wait for before and after each
// stage) and checks it whole, so that a release is rejected when it is loaded rather than halfway
// through an upgrade. It holds no state: the progress of a plan lives in the ClusterAddon's status.
package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon/condition"
)

// Action is what a stage does with its chart.
type Action string

const (
	// ActionApply applies the chart's objects.
	ActionApply Action = "apply"
	// ActionDelete deletes the chart's objects.
	ActionDelete Action = "delete"
)

// Hooks whose stages the operator runs.
const (
	HookAfterControlPlaneInitialized = "AfterControlPlaneInitialized"
	HookBeforeClusterUpgrade         = "BeforeClusterUpgrade"
)

// knownHooks are the Cluster API lifecycle hooks a clusteraddon.yaml may name. Stages of hooks
// other than the two above are parsed and checked but not run (the reference runs none of them
// either); an unknown name is a typo and rejected.
var knownHooks = []string{
	"BeforeClusterCreate",
	HookAfterControlPlaneInitialized,
	HookBeforeClusterUpgrade,
	"BeforeControlPlaneUpgrade",
	"AfterControlPlaneUpgrade",
	"BeforeWorkersUpgrade",
	"AfterWorkersUpgrade",
	"AfterClusterUpgrade",
	"BeforeClusterDelete",
}

// ErrInvalidConfig matches every error Parse returns for a malformed clusteraddon.yaml.
var ErrInvalidConfig = errors.New("invalid clusteraddon.yaml")

// ConfigError says where in clusteraddon.yaml a problem is.
type ConfigError struct {
	// Field is the path of the offending field, e.g. `addonStages.BeforeClusterUpgrade[0].action`.
	Field string
	// Err is the problem.
	Err error
}

func (e *ConfigError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %v", ErrInvalidConfig, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", ErrInvalidConfig, e.Field, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInvalidConfig) true for every *ConfigError.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Config is a parsed, checked clusteraddon.yaml.
type Config struct {
	// APIVersion is `clusteraddonconfig.x-k8s.io/v1alpha1` in every known release.
	APIVersion string `json:"apiVersion,omitempty"`
	// ClusterAddonVersion is informational.
	ClusterAddonVersion string `json:"clusterAddonVersion,omitempty"`
	// AddonStages are the stages per lifecycle hook, in order.
	AddonStages map[string][]Stage `json:"addonStages"`
}

// Stage is one step of a hook: a chart of the addon archive, applied or deleted.
type Stage struct {
	// Name is the chart's directory in the addon archive. The reference operator spells the key
	// `helmChartName`, the release format documents `name`; both are read.
	Name string
	// Action is apply or delete.
	Action Action
	// WaitForPreCondition must hold before the chart is applied or deleted; nil means none.
	WaitForPreCondition *condition.Condition
	// WaitForPostCondition must hold before the stage counts as done; nil means none.
	WaitForPostCondition *condition.Condition
}

type stageJSON struct {
	Name                 string               `json:"name,omitempty"`
	HelmChartName        string               `json:"helmChartName,omitempty"`
	Action               Action               `json:"action"`
	WaitForPreCondition  *condition.Condition `json:"waitForPreCondition,omitempty"`
	WaitForPostCondition *condition.Condition `json:"waitForPostCondition,omitempty"`
}

// UnmarshalJSON reads either spelling of the chart name.
func (s *Stage) UnmarshalJSON(data []byte) error {
	var j stageJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	s.Name = j.Name
	if s.Name == "" {
		s.Name = j.HelmChartName
	}
	s.Action = j.Action
	s.WaitForPreCondition = j.WaitForPreCondition
	s.WaitForPostCondition = j.WaitForPostCondition
	return nil
}

// MarshalJSON writes the documented spelling.
func (s Stage) MarshalJSON() ([]byte, error) {
	return json.Marshal(stageJSON{Name: s.Name, Action: s.Action, WaitForPreCondition: s.WaitForPreCondition, WaitForPostCondition: s.WaitForPostCondition})
}

// maxConfigBytes bounds clusteraddon.yaml; real ones are a few kilobytes.
const maxConfigBytes = 1 << 20

// Parse reads and checks clusteraddon.yaml: known hook names, a chart name that is one path element,
// apply or delete, and well-formed conditions whose CEL expressions compile. Every error matches
// ErrInvalidConfig.
func Parse(data []byte) (*Config, error) {
	if len(data) > maxConfigBytes {
		return nil, &ConfigError{Err: fmt.Errorf("%d bytes is more than the limit of %d", len(data), maxConfigBytes)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &ConfigError{Err: errors.New("file is empty")}
	}
	var c Config
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, &ConfigError{Err: fmt.Errorf("parsing YAML: %v", err)}
	}
	if len(c.AddonStages) == 0 {
		return nil, &ConfigError{Field: "addonStages", Err: errors.New("no stages")}
	}
	for hook, stages := range c.AddonStages {
		field := "addonStages." + hook
		if !slices.Contains(knownHooks, hook) {
			return nil, &ConfigError{Field: field, Err: fmt.Errorf("%q is not a Cluster API lifecycle hook (one of %s)", hook, strings.Join(knownHooks, ", "))}
		}
		for i, s := range stages {
			f := fmt.Sprintf("%s[%d]", field, i)
			if err := CheckChartName(s.Name); err != nil {
				return nil, &ConfigError{Field: f + ".name", Err: err}
			}
			if s.Action != ActionApply && s.Action != ActionDelete {
				return nil, &ConfigError{Field: f + ".action", Err: fmt.Errorf("%q is neither apply nor delete", s.Action)}
			}
			if err := s.WaitForPreCondition.Compile(); err != nil {
				return nil, &ConfigError{Field: f + ".waitForPreCondition", Err: err}
			}
			if err := s.WaitForPostCondition.Compile(); err != nil {
				return nil, &ConfigError{Field: f + ".waitForPostCondition", Err: err}
			}
		}
	}
	return &c, nil
}

var chartNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$`)

// CheckChartName keeps a chart name a single path element: it is joined with the extraction
// directory of the addon archive, so `../x` or `a/b` must never pass.
func CheckChartName(n string) error {
	if n == "" {
		return errors.New("chart name is empty (set name or helmChartName)")
	}
	if !chartNameRE.MatchString(n) || n != path.Base(n) || strings.Contains(n, "..") {
		return fmt.Errorf("%q is not a chart directory name", n)
	}
	return nil
}

// Stages returns the stages of a hook, in order; nil when the hook has none.
func (c *Config) Stages(hook string) []Stage {
	return c.AddonStages[hook]
}

// SteadyCharts returns the charts a Cluster runs once its addons are installed: those that
// AfterControlPlaneInitialized leaves applied, in their order. They are the desired set that the
// operator keeps in sync and prunes against.
func (c *Config) SteadyCharts() []string {
	var charts []string
	for _, s := range c.AddonStages[HookAfterControlPlaneInitialized] {
		charts = slices.DeleteFunc(charts, func(n string) bool { return n == s.Name })
		if s.Action == ActionApply {
			charts = append(charts, s.Name)
		}
	}
	return charts
}
