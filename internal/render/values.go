package render

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"sigs.k8s.io/yaml"
)

// ErrValuesTemplate is matched (errors.Is) by every error of ValuesTemplate but
// ErrRenderUnavailable.
var ErrValuesTemplate = errors.New("invalid values template")

// ErrValuesExecution is matched, besides ErrValuesTemplate, by a values template that parsed but
// failed while executing (a nil field, a failing `required`): it may depend on the state of the
// objects it reads, so callers can wait instead of calling the release bad.
var ErrValuesExecution = errors.New("failed while executing")

// ValuesTemplate renders a values file that is itself a Go template (cluster-addon-values.yaml,
// overwrite.yaml) over data, e.g. {"Cluster": ..., "ControlPlane": ..., "InfraCluster": ...} with
// the objects' unstructured content, and returns the values.
//
// The functions are those of Helm templates that make sense without a chart: sprig, toYaml,
// fromYaml, toJson, fromJson and required. Sprig's env, expandenv and getHostByName are removed:
// release files are outside input and must neither read the operator's environment (which holds
// credentials) nor reach the network. A missing key renders as an empty string, as in Helm.
//
// When the result is a single top-level key `values` holding a string (the SCS convention), that
// string is parsed as the values YAML. The result is never nil.
//
// The template runs in a rendering process with the budgets of Chart (SetLimits): a values
// template can loop and allocate as well as a chart's.
func ValuesTemplate(content []byte, data map[string]any) (map[string]any, error) {
	l := CurrentLimits()
	// No context in the signature: the time budget bounds it (plus the wait for a slot).
	ctx, cancel := context.WithTimeout(context.Background(), 10*l.Timeout)
	defer cancel()
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding its data: %w", ErrValuesTemplate, err)
	}
	resp, err := runIsolated(ctx, "values template", request{Values: &valuesRequest{Content: content, Data: raw}})
	if err != nil {
		if IsBudgetError(err) {
			return nil, fmt.Errorf("%w: %w", ErrValuesTemplate, err)
		}
		return nil, err
	}
	if resp.Values == nil {
		return map[string]any{}, nil
	}
	return resp.Values, nil
}

// valuesTemplate is ValuesTemplate in this process: the child's side.
func valuesTemplate(content []byte, data map[string]any) (map[string]any, error) {
	tpl, err := template.New("values").Option("missingkey=zero").Funcs(valuesFuncs).Parse(string(content))
	if err != nil {
		return nil, fmt.Errorf("%w: parsing: %w", ErrValuesTemplate, err)
	}
	var buf bytes.Buffer
	if err := tpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("%w: %w: %w", ErrValuesTemplate, ErrValuesExecution, err)
	}
	// text/template prints a missing map key as "<no value>" even with missingkey=zero; Helm
	// replaces it the same way.
	out := strings.ReplaceAll(buf.String(), "<no value>", "")

	vals, err := parseValues([]byte(out))
	if err != nil {
		return nil, fmt.Errorf("%w: rendered values: %w", ErrValuesTemplate, err)
	}
	if inner, ok := vals["values"].(string); ok && len(vals) == 1 {
		vals, err = parseValues([]byte(inner))
		if err != nil {
			return nil, fmt.Errorf("%w: rendered values (the string under values:): %w", ErrValuesTemplate, err)
		}
	}
	return vals, nil
}

func parseValues(data []byte) (map[string]any, error) {
	vals := map[string]any{}
	// sigs.k8s.io/yaml goes through JSON, so the values have the JSON types Helm's own values have.
	if err := yaml.Unmarshal(data, &vals); err != nil {
		return nil, err
	}
	if vals == nil { // a document that is only "null" or comments
		vals = map[string]any{}
	}
	return vals, nil
}

var valuesFuncs = func() template.FuncMap {
	f := sprig.TxtFuncMap()
	for _, name := range []string{"env", "expandenv", "getHostByName"} {
		delete(f, name)
	}
	f["toYaml"] = func(v any) string {
		b, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(b), "\n")
	}
	f["fromYaml"] = func(s string) map[string]any {
		m := map[string]any{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["toJson"] = func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(b)
	}
	f["fromJson"] = func(s string) map[string]any {
		m := map[string]any{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["required"] = func(msg string, v any) (any, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	return f
}()
