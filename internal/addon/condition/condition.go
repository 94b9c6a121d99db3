// Package condition evaluates the waitForPreCondition and waitForPostCondition of an addon stage:
// CEL expressions over objects read from a workload cluster. Compile checks one when a release is
// parsed; Evaluate answers "does it hold now" against a live cluster.
package condition

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/google/cel-go/cel"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Condition is a waitForPreCondition or waitForPostCondition: a CEL expression over objects of the
// workload cluster, each bound to a variable named by its key.
type Condition struct {
	// Objects are the objects the expression reads.
	Objects []Object `json:"objects,omitempty"`
	// Conditions is the CEL expression; it must evaluate to true.
	Conditions string `json:"conditions,omitempty"`
	// Timeout is read for compatibility with the reference and not used: a condition that does not
	// hold is reported in the ClusterAddon's conditions and retried, never given up on, because
	// giving up would leave a Cluster half upgraded.
	Timeout string `json:"timeout,omitempty"`

	program cel.Program
}

// Object names one object of the workload cluster and the CEL variable it is bound to.
type Object struct {
	// Key is the CEL variable name.
	Key string `json:"key"`
	// APIVersion of the object, e.g. `apps/v1`.
	APIVersion string `json:"apiVersion"`
	// Kind of the object.
	Kind string `json:"kind"`
	// Name of the object.
	Name string `json:"name"`
	// Namespace of the object; empty for cluster-scoped objects.
	Namespace string `json:"namespace,omitempty"`
}

func (o Object) String() string {
	if o.Namespace == "" {
		return fmt.Sprintf("%s %s", o.Kind, o.Name)
	}
	return fmt.Sprintf("%s %s/%s", o.Kind, o.Namespace, o.Name)
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// celReserved are CEL's reserved words, which cannot name a variable.
var celReserved = []string{"true", "false", "null", "in", "as", "break", "const", "continue", "else",
	"for", "function", "if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while"}

// maxExpressionLength bounds a CEL expression; real ones are one line.
const maxExpressionLength = 4096

// Compile checks the condition and prepares its program; a nil condition is valid. Its errors say
// what is wrong without the condition's place in the file, which the caller knows.
func (c *Condition) Compile() error {
	if c == nil {
		return nil
	}
	if err := c.check(); err != nil {
		return err
	}
	prg, err := program(c.Conditions, c.Objects)
	if err != nil {
		return err
	}
	c.program = prg
	return nil
}

// check checks what CEL does not: an expression of bounded size, and objects that each name a
// kind, a name and a group/version and bind a distinct CEL identifier.
func (c *Condition) check() error {
	if len(c.Objects) == 0 {
		return errors.New("objects is empty")
	}
	if strings.TrimSpace(c.Conditions) == "" {
		return errors.New("conditions (the CEL expression) is empty")
	}
	if len(c.Conditions) > maxExpressionLength {
		return fmt.Errorf("conditions is longer than %d characters", maxExpressionLength)
	}
	seen := map[string]bool{}
	for i, o := range c.Objects {
		switch {
		case !identRE.MatchString(o.Key) || slices.Contains(celReserved, o.Key):
			return fmt.Errorf("objects[%d].key %q is not a CEL identifier", i, o.Key)
		case seen[o.Key]:
			return fmt.Errorf("objects[%d].key %q is used twice", i, o.Key)
		case o.Kind == "" || o.Name == "":
			return fmt.Errorf("objects[%d] needs kind and name", i)
		}
		if _, err := schema.ParseGroupVersion(o.APIVersion); err != nil || o.APIVersion == "" {
			return fmt.Errorf("objects[%d].apiVersion %q is not group/version", i, o.APIVersion)
		}
		seen[o.Key] = true
	}
	return nil
}

// program compiles expr with each object bound to its key as a map, and checks that it yields a
// bool.
func program(expr string, objects []Object) (cel.Program, error) {
	opts := make([]cel.EnvOption, 0, len(objects))
	for _, o := range objects {
		opts = append(opts, cel.Variable(o.Key, cel.MapType(cel.StringType, cel.DynType)))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the CEL environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("compiling %q: %w", expr, iss.Err())
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("%q evaluates to %s, not bool", expr, t)
	}
	// A cost limit keeps a hostile expression (a release is outside input) from spinning a
	// reconcile worker.
	prg, err := env.Program(ast, cel.CostLimit(1_000_000))
	if err != nil {
		return nil, fmt.Errorf("preparing %q: %w", expr, err)
	}
	return prg, nil
}

// Result is the outcome of evaluating a Condition.
type Result struct {
	// Met is true when the expression evaluated to true.
	Met bool
	// Reason says why it is not met, for a condition message.
	Reason string
}

// Evaluate reads the condition's objects through r and evaluates the expression. An object that
// does not exist yet (or whose kind the API server does not serve yet) and an expression that
// fails on a field that is not set yet mean "not yet", not an error; only failing to read from
// the API server is an error.
func (c *Condition) Evaluate(ctx context.Context, r client.Reader) (Result, error) {
	if c == nil {
		return Result{Met: true}, nil
	}
	if c.program == nil {
		// Only a condition that did not come through Compile (plan.Parse) gets here.
		if err := c.Compile(); err != nil {
			return Result{}, fmt.Errorf("compiling condition %q: %w", c.Conditions, err)
		}
	}
	vars := make(map[string]any, len(c.Objects))
	for _, o := range c.Objects {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(o.APIVersion)
		u.SetKind(o.Kind)
		err := r.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: o.Name}, u)
		switch {
		case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
			return Result{Reason: fmt.Sprintf("waiting for %s %s to exist", o.APIVersion, o)}, nil
		case err != nil:
			return Result{}, fmt.Errorf("reading %s for condition %q: %w", o, c.Conditions, err)
		}
		vars[o.Key] = u.Object
	}
	out, _, err := c.program.ContextEval(ctx, vars)
	if err != nil {
		return Result{Reason: fmt.Sprintf("%q cannot be evaluated yet: %v", c.Conditions, err)}, nil
	}
	if b, ok := out.Value().(bool); !ok || !b {
		return Result{Reason: fmt.Sprintf("%q is %v", c.Conditions, out.Value())}, nil
	}
	return Result{Met: true}, nil
}
