package apply_test

import (
	"errors"
	"strings"
	"testing"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
)

func TestInventoryRoundTrip(t *testing.T) {
	ok := apply.Ref{Group: "cluster.x-k8s.io", Version: "v1beta1", Kind: "ClusterClass", Namespace: "ns", Name: "cc"}
	bad := apply.Ref{Version: "v1", Kind: "Namespace", Name: "n"}
	res := apply.Result{
		Applied: []apply.Ref{ok, bad},
		Failed:  map[apply.Ref]error{bad: errors.New(strings.Repeat("x", 20000))},
	}
	got := apply.ToResources(res)
	if len(got) != 2 || got[0].Status != clusterstackv1alpha1.ResourceStatusSynced || got[0].Error != "" {
		t.Fatalf("resources %+v", got)
	}
	if got[1].Status != clusterstackv1alpha1.ResourceStatusNotSynced || len(got[1].Error) != 10240 {
		t.Errorf("failed entry %v / %d characters, want not-synced with the error cut to the API bound", got[1].Status, len(got[1].Error))
	}
	back := apply.FromResources(got)
	if len(back) != 2 || back[0] != ok || back[1] != bad {
		t.Errorf("round trip %v, want %v", back, res.Applied)
	}
	if apply.ToResources(apply.Result{}) != nil || apply.FromResources(nil) != nil {
		t.Error("empty inventories must stay nil")
	}
}
