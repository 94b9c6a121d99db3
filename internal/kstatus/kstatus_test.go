package kstatus_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/kstatus"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
)

func TestBoundMessage(t *testing.T) {
	long := "Rendering the cluster-class chart: " + strings.Repeat("frame: ", 20000) + "innermost cause"
	for name, tc := range map[string]struct {
		msg     string
		same    bool
		head    string
		tail    string
		hasMark bool
	}{
		"short":         {msg: "all good", same: true},
		"at the bound":  {msg: strings.Repeat("a", kstatus.MaxMessageBytes), same: true},
		"one over":      {msg: strings.Repeat("a", kstatus.MaxMessageBytes+1), hasMark: true},
		"include chain": {msg: long, head: "Rendering the cluster-class chart: ", tail: "innermost cause", hasMark: true},
		"multi-byte":    {msg: strings.Repeat("ä", kstatus.MaxMessageBytes), hasMark: true},
	} {
		t.Run(name, func(t *testing.T) {
			got := kstatus.BoundMessage(tc.msg)
			if tc.same {
				if got != tc.msg {
					t.Fatalf("a message that fits was changed")
				}
				return
			}
			if len(got) > kstatus.MaxMessageBytes {
				t.Errorf("len = %d, want at most %d", len(got), kstatus.MaxMessageBytes)
			}
			if !utf8.ValidString(got) {
				t.Errorf("the cut split a character")
			}
			if !strings.HasPrefix(got, tc.head) || !strings.HasSuffix(got, tc.tail) {
				t.Errorf("head or tail lost: %.100q ... %.100q", got, got[len(got)-100:])
			}
			if tc.hasMark != strings.Contains(got, "bytes cut") {
				t.Errorf("marker present = %v, want %v", !tc.hasMark, tc.hasMark)
			}
		})
	}
}

func TestBoundConditionsAndMarks(t *testing.T) {
	long := strings.Repeat("x", 100000)
	cs := &csv1alpha1.ClusterStack{}
	kstatus.MarkStalled(cs, csv1alpha1.InvalidReleaseReason, long)
	cs.SetConditions(append(cs.GetConditions(), metav1.Condition{Type: "Step", Status: metav1.ConditionFalse, Reason: "Bad", Message: long}))
	kstatus.BoundConditions(cs)
	for _, c := range cs.GetConditions() {
		if len(c.Message) > kstatus.MaxMessageBytes {
			t.Errorf("condition %s: message of %d bytes", c.Type, len(c.Message))
		}
	}
}

func FuzzBoundMessage(f *testing.F) {
	f.Add("short")
	f.Add(strings.Repeat("error calling include: ", 500))
	f.Add(strings.Repeat("ä€😀", 2000))
	f.Fuzz(func(t *testing.T, msg string) {
		got := kstatus.BoundMessage(msg)
		if len(got) > kstatus.MaxMessageBytes {
			t.Fatalf("len = %d", len(got))
		}
		if utf8.ValidString(msg) && !utf8.ValidString(got) {
			t.Fatal("the cut split a character")
		}
		if len(msg) <= kstatus.MaxMessageBytes && got != msg {
			t.Fatal("a message that fits was changed")
		}
	})
}

func TestSummarise(t *testing.T) {
	type triple struct{ ready, reconciling, stalled metav1.ConditionStatus }
	for name, tc := range map[string]struct {
		err    error
		want   triple
		reason string
		msg    string
	}{
		"done":      {want: triple{"True", "False", "False"}, reason: csv1alpha1.ReadyReason, msg: "all there"},
		"stalled":   {err: fmt.Errorf("step: %w", outcome.Stall("InvalidRelease", "fix the release")), want: triple{"False", "False", "True"}, reason: "InvalidRelease", msg: "fix the release"},
		"waiting":   {err: outcome.Wait("WaitingForImages", time.Minute, "images"), want: triple{"False", "True", "False"}, reason: "WaitingForImages", msg: "images"},
		"transient": {err: outcome.Retry("SourceError", errors.New("registry down")), want: triple{"False", "True", "False"}, reason: "SourceError", msg: "registry down"},
		// A plain error changes nothing: the conditions of the last outcome stay.
		"plain error": {err: errors.New("conflict"), want: triple{"False", "False", "True"}, reason: "Earlier", msg: "earlier stall"},
	} {
		t.Run(name, func(t *testing.T) {
			obj := &csv1alpha1.ClusterAddon{}
			kstatus.MarkStalled(obj, "Earlier", "earlier stall")
			kstatus.Summarise(obj, tc.err, csv1alpha1.ReadyReason, "all there")
			got := triple{}
			for _, c := range obj.Status.Conditions {
				switch c.Type {
				case csv1alpha1.ReadyCondition:
					got.ready = c.Status
					if c.Reason != tc.reason || c.Message != tc.msg {
						t.Errorf("Ready = %s %q, want %s %q", c.Reason, c.Message, tc.reason, tc.msg)
					}
				case csv1alpha1.ReconcilingCondition:
					got.reconciling = c.Status
				case csv1alpha1.StalledCondition:
					got.stalled = c.Status
				}
			}
			if got != tc.want {
				t.Errorf("Ready/Reconciling/Stalled = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDropForeign(t *testing.T) {
	cond := func(typ string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: "R"}
	}
	owned := []string{csv1alpha1.ReadyCondition, csv1alpha1.ResourcesAppliedCondition}
	for name, tc := range map[string]struct {
		in, want []string
	}{
		"none":          {},
		"only owned":    {in: []string{"Ready", "ResourcesApplied"}, want: []string{"Ready", "ResourcesApplied"}},
		"reference":     {in: []string{"Ready", "HelmChartApplied", "GitAPIAvailable", "ResourcesApplied"}, want: []string{"Ready", "ResourcesApplied"}},
		"only foreign":  {in: []string{"ClusterReady"}, want: nil},
		"order is kept": {in: []string{"ResourcesApplied", "Other", "Ready"}, want: []string{"ResourcesApplied", "Ready"}},
	} {
		t.Run(name, func(t *testing.T) {
			cs := &csv1alpha1.ClusterStack{}
			for _, typ := range tc.in {
				cs.Status.Conditions = append(cs.Status.Conditions, cond(typ))
			}
			kstatus.DropForeign(cs, owned)
			var got []string
			for _, c := range cs.Status.Conditions {
				got = append(got, c.Type)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("types = %v, want %v", got, tc.want)
			}
		})
	}
}
