package clusterstack

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cluster-api/util/conditions"
)

// cond is a condition as the status tables compare it: without times and generations.
type cond struct {
	Status metav1.ConditionStatus
	Reason string
	// Message is compared whole, unless it ends in "..." (then as a prefix).
	Message string
}

// condTrue is a step condition, or Ready, that is done.
func condTrue(reason string) cond { return cond{Status: metav1.ConditionTrue, Reason: reason} }

// condFalse is a condition that is not (yet) what it should be.
func condFalse(reason, message string) cond {
	return cond{Status: metav1.ConditionFalse, Reason: reason, Message: message}
}

// condActive is Reconciling or Stalled while True.
func condActive(reason, message string) cond {
	return cond{Status: metav1.ConditionTrue, Reason: reason, Message: message}
}

// withConditions sets conds on obj, as a reconcile before this one left them.
func withConditions(obj conditions.Setter, conds map[string]cond) {
	types := make([]string, 0, len(conds))
	for t := range conds {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		c := conds[t]
		conditions.Set(obj, metav1.Condition{Type: t, Status: c.Status, Reason: c.Reason, Message: c.Message})
	}
}

// diffConditions compares every condition of obj with want: a condition missing from want must
// be absent.
func diffConditions(obj conditions.Getter, want map[string]cond) []string {
	var diffs []string
	got := map[string]cond{}
	for _, c := range obj.GetConditions() {
		got[c.Type] = cond{Status: c.Status, Reason: c.Reason, Message: c.Message}
	}
	for t, w := range want {
		g, ok := got[t]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: absent, want %+v", t, w))
		case g.Status != w.Status || g.Reason != w.Reason || !messageMatches(g.Message, w.Message):
			diffs = append(diffs, fmt.Sprintf("%s: got %+v, want %+v", t, g, w))
		}
	}
	for t, g := range got {
		if _, ok := want[t]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: got %+v, want absent", t, g))
		}
	}
	sort.Strings(diffs)
	return diffs
}

func messageMatches(got, want string) bool {
	if prefix, ok := strings.CutSuffix(want, "..."); ok {
		return strings.HasPrefix(got, prefix)
	}
	return got == want
}

func fromMaps(ms ...map[string]cond) map[string]cond {
	out := map[string]cond{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
