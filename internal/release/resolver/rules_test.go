package resolver

import (
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/event"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
)

func TestReleaseOfCluster(t *testing.T) {
	t.Parallel()
	cluster := func(class, classNS string) *clusterv1.Cluster {
		c := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: "c"}}
		c.Spec.Topology.ClassRef = clusterv1.ClusterClassRef{Name: class, Namespace: classNS}
		return c
	}
	tests := []struct {
		name    string
		cluster *clusterv1.Cluster
		want    Ref
		wantOK  bool
	}{
		{name: "no topology", cluster: cluster("", "")},
		{name: "not a cluster-stack class", cluster: cluster("my-class", "")},
		{name: "class of the Cluster's namespace", cluster: cluster("openstack-scs-1-32-v3", ""),
			want: Ref{Namespace: "tenant", Release: name.MustParse("openstack-scs-1-32-v3")}, wantOK: true},
		{name: "same namespace named explicitly", cluster: cluster("openstack-scs-1-32-v3", "tenant"),
			want: Ref{Namespace: "tenant", Release: name.MustParse("openstack-scs-1-32-v3")}, wantOK: true},
		{name: "class of another namespace", cluster: cluster("openstack-scs-1-32-v3", "stacks"),
			want: Ref{Namespace: "stacks", Release: name.MustParse("openstack-scs-1-32-v3")}, wantOK: true},
		{name: "hash version is dotted in the class name", cluster: cluster("openstack-scs-1-32-v0-sha.abc1234", ""),
			want: Ref{Namespace: "tenant", Release: name.MustParse("openstack-scs-1-32-v0-sha-abc1234")}, wantOK: true},
		{name: "dashed hash is not a class name", cluster: cluster("openstack-scs-1-32-v0-sha-abc1234", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ReleaseOfCluster(tt.cluster)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("got %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestReleaseUseChanged(t *testing.T) {
	t.Parallel()
	cluster := func(class string, ready bool) *clusterv1.Cluster {
		c := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: "c"}}
		c.Spec.Topology.ClassRef = clusterv1.ClusterClassRef{Name: class}
		if ready {
			c.Status.Initialization.ControlPlaneInitialized = ptr.To(true)
			c.Status.Phase = "Provisioned"
		}
		return c
	}
	update := func(o, n *clusterv1.Cluster) event.UpdateEvent { return event.UpdateEvent{ObjectOld: o, ObjectNew: n} }
	for _, creates := range []bool{true, false} {
		p := ReleaseUseChanged(creates)
		if got := p.Create(event.CreateEvent{Object: cluster("openstack-scs-1-32-v3", false)}); got != creates {
			t.Errorf("creates=%v: a create passes: %v", creates, got)
		}
		if !p.Delete(event.DeleteEvent{Object: cluster("openstack-scs-1-32-v3", true)}) {
			t.Errorf("creates=%v: a delete does not pass", creates)
		}
		for _, u := range []struct {
			name string
			e    event.UpdateEvent
			want bool
		}{
			{"status only", update(cluster("openstack-scs-1-32-v3", false), cluster("openstack-scs-1-32-v3", true)), false},
			{"upgrade", update(cluster("openstack-scs-1-32-v3", true), cluster("openstack-scs-1-32-v4", true)), true},
			{"onto a cluster-stack class", update(cluster("my-class", true), cluster("openstack-scs-1-32-v4", true)), true},
			{"off a cluster-stack class", update(cluster("openstack-scs-1-32-v3", true), cluster("my-class", true)), true},
			{"between foreign classes", update(cluster("my-class", true), cluster("other-class", true)), false},
		} {
			if got := p.Update(u.e); got != u.want {
				t.Errorf("creates=%v, update %s: passes %v, want %v", creates, u.name, got, u.want)
			}
		}
	}
}

func TestStackRules(t *testing.T) {
	t.Parallel()
	stack := func(channel string) *clusterstackv1alpha1.ClusterStack {
		return &clusterstackv1alpha1.ClusterStack{Spec: clusterstackv1alpha1.ClusterStackSpec{Provider: "openstack", Name: "scs", KubernetesVersion: "1.32", Channel: channel}}
	}
	tests := []struct {
		name      string
		cs        *clusterstackv1alpha1.ClusterStack
		release   string
		ofStack   bool
		inChannel bool
	}{
		{name: "stable release, unset channel", cs: stack(""), release: "openstack-scs-1-32-v3", ofStack: true, inChannel: true},
		{name: "stable release, stable channel", cs: stack("stable"), release: "openstack-scs-1-32-v3", ofStack: true, inChannel: true},
		{name: "hash release, stable channel", cs: stack("stable"), release: "openstack-scs-1-32-v0-sha-abc1234", ofStack: true},
		{name: "hash release, custom channel", cs: stack("custom"), release: "openstack-scs-1-32-v0-sha-abc1234", ofStack: true, inChannel: true},
		{name: "other minor", cs: stack(""), release: "openstack-scs-1-33-v3"},
		{name: "other stack", cs: stack(""), release: "openstack-scs2-1-32-v3"},
		{name: "other provider", cs: stack(""), release: "docker-scs-1-32-v3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := name.MustParse(tt.release)
			if got := OfStack(tt.cs, n); got != tt.ofStack {
				t.Errorf("OfStack: %v, want %v", got, tt.ofStack)
			}
			if got := InChannel(tt.cs, n); got != tt.inChannel {
				t.Errorf("InChannel: %v, want %v", got, tt.inChannel)
			}
		})
	}
	bad := stack("")
	bad.Spec.KubernetesVersion = "1"
	if OfStack(bad, name.MustParse("openstack-scs-1-32-v3")) {
		t.Error("a ClusterStack with an unparsable Kubernetes version matched a release")
	}
}

func TestLatest(t *testing.T) {
	t.Parallel()
	var releases []name.Release
	for _, s := range []string{
		"openstack-scs-1-32-v9", "openstack-scs-1-32-v10", "openstack-scs-1-32-v1-alpha-2",
		"openstack-scs-1-32-v0-sha-abc1234", "openstack-scs-1-33-v11", "docker-scs-1-32-v12",
	} {
		releases = append(releases, name.MustParse(s))
	}
	stack := func(channel string) *clusterstackv1alpha1.ClusterStack {
		return &clusterstackv1alpha1.ClusterStack{Spec: clusterstackv1alpha1.ClusterStackSpec{Provider: "openstack", Name: "scs", KubernetesVersion: "1.32", Channel: channel}}
	}
	tests := []struct {
		name     string
		cs       *clusterstackv1alpha1.ClusterStack
		releases []name.Release
		want     string
	}{
		{name: "newest stable, numerically", cs: stack("stable"), releases: releases, want: "openstack-scs-1-32-v10"},
		{name: "custom channel has no newest", cs: stack("custom"), releases: releases},
		{name: "none of the stack", cs: stack("stable"), releases: releases[4:]},
		{name: "empty source", cs: stack("stable")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Latest(tt.cs, tt.releases)
			if tt.want == "" {
				if ok {
					t.Errorf("got %s, want none", got)
				}
				return
			}
			if !ok || got.String() != tt.want {
				t.Errorf("got %s, %v; want %s", got, ok, tt.want)
			}
		})
	}
}

func TestConfigOf(t *testing.T) {
	t.Parallel()
	secret := map[string][]byte{"username": []byte("u\n"), "password": []byte("p"), "token": []byte("t")}
	tests := []struct {
		name    string
		spec    clusterstackv1alpha1.ReleaseSource
		secret  map[string][]byte
		want    source.Config
		wantErr error
	}{
		{
			name:   "oci with secret",
			spec:   clusterstackv1alpha1.ReleaseSource{OCI: &clusterstackv1alpha1.OCISource{Registry: "registry.example", Repository: "kaas/cluster-stacks", Insecure: true}},
			secret: secret,
			want:   source.Config{Type: source.TypeOCI, OCI: source.OCIConfig{Registry: "registry.example", Repository: "kaas/cluster-stacks", PlainHTTP: true, Credentials: source.Credentials{Username: "u", Password: "p", Token: "t"}}},
		},
		{
			name:   "github with token and enterprise API",
			spec:   clusterstackv1alpha1.ReleaseSource{GitHub: &clusterstackv1alpha1.GitHubSource{Owner: "SovereignCloudStack", Repository: "cluster-stacks", APIURL: "https://git.example/api/v3"}},
			secret: secret,
			want:   source.Config{Type: source.TypeGitHub, GitHub: source.GitHubConfig{Owner: "SovereignCloudStack", Repository: "cluster-stacks", APIURL: "https://git.example/api/v3", Token: "t"}},
		},
		{name: "local", spec: clusterstackv1alpha1.ReleaseSource{Local: &clusterstackv1alpha1.LocalSource{Path: "/releases"}}, want: source.Config{Type: source.TypeLocal, Local: source.LocalConfig{Path: "/releases"}}},
		{name: "none", wantErr: source.ErrNoSource},
		{name: "two", spec: clusterstackv1alpha1.ReleaseSource{Local: &clusterstackv1alpha1.LocalSource{Path: "/x"}, GitHub: &clusterstackv1alpha1.GitHubSource{Owner: "o", Repository: "r"}}, wantErr: source.ErrInvalidConfig},
		{name: "oci without repository", spec: clusterstackv1alpha1.ReleaseSource{OCI: &clusterstackv1alpha1.OCISource{Registry: "r"}}, wantErr: source.ErrInvalidConfig},
		{name: "github without owner", spec: clusterstackv1alpha1.ReleaseSource{GitHub: &clusterstackv1alpha1.GitHubSource{Repository: "r"}}, wantErr: source.ErrInvalidConfig},
		{name: "local without path", spec: clusterstackv1alpha1.ReleaseSource{Local: &clusterstackv1alpha1.LocalSource{}}, wantErr: source.ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := configOf(&tt.spec, tt.secret)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("config (-want +got):\n%s", d)
			}
			if got.Type == source.TypeLocal {
				// A local source needs its directory below a served root.
				dir, err := os.MkdirTemp(t.TempDir(), "releases")
				if err != nil {
					t.Fatal(err)
				}
				got.Local.Path, got.LocalRoots = dir, []string{dir}
			}
			if _, err := source.New(got); err != nil {
				t.Errorf("New: %v", err)
			}
		})
	}
}
