package name

import (
	"errors"
	"slices"
	"testing"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		dashed  bool
		want    Version
		channel Channel
		wantErr bool
	}{
		{in: "v1", want: Stable(1), channel: ChannelStable},
		{in: "v10", want: Stable(10), channel: ChannelStable},
		{in: "v1", dashed: true, want: Stable(1), channel: ChannelStable},
		{in: "v999999999", want: Stable(999999999), channel: ChannelStable}, // the largest number CEL accepts too
		{in: "v0-sha.abc1234", want: Version{Kind: KindHash, Hash: "abc1234"}, channel: ChannelCustom},
		{in: "v0-sha-lvlvyfw", dashed: true, want: Version{Kind: KindHash, Hash: "lvlvyfw"}, channel: ChannelCustom},
		{in: "v1-alpha.1", want: Version{Major: 1, Kind: KindPreRelease, PreRelease: "alpha", Patch: 1}, channel: "alpha"},
		{in: "v2-rc1-0", dashed: true, want: Version{Major: 2, Kind: KindPreRelease, PreRelease: "rc1", Patch: 0}, channel: "rc1"},
		{in: "", wantErr: true},
		{in: "1", wantErr: true},
		{in: "v", wantErr: true},
		{in: "v0", wantErr: true},
		{in: "v01", wantErr: true},
		{in: "v-1", wantErr: true},
		{in: "v+1", wantErr: true},
		{in: "V1", wantErr: true},
		{in: "v1.0", wantErr: true},
		{in: "v1-alpha", wantErr: true},
		{in: "v1-alpha.01", wantErr: true},
		{in: "v1-alpha-1", wantErr: true},               // dashed form given to the dotted parser
		{in: "v1-alpha.1", dashed: true, wantErr: true}, // and the reverse
		{in: "v0-sha-abc1234", wantErr: true},           // dashed hash to the dotted parser
		{in: "v0-sha.abc1234", dashed: true, wantErr: true},
		{in: "v0-sha.abc123", wantErr: true},  // short hash
		{in: "v0-sha.ABC1234", wantErr: true}, // upper case
		{in: "v1-sha.abc1234", wantErr: true}, // hash versions are v0
		{in: "v1-sha.1", wantErr: true},       // "sha" is reserved for hashes
		{in: "v0-alpha.1", wantErr: true},
		{in: "v1-Alpha.1", wantErr: true},
		{in: "v1-1a.1", wantErr: true},
		{in: "v1-.1", wantErr: true},
		{in: "v9999999999", wantErr: true},
		{in: "v99999999999999999999999999999", wantErr: true}, // would overflow int
		{in: "v1-alpha.99999999999999999999999999999", wantErr: true},
		{in: "v1-alpha-99999999999999999999999999999", dashed: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			parse, format := ParseVersion, Version.String
			if tt.dashed {
				parse, format = ParseDashedVersion, Version.Dashed
			}
			got, err := parse(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidVersion) {
					t.Fatalf("got %+v, %v; want ErrInvalidVersion", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if s := format(got); s != tt.in {
				t.Errorf("printed %q, want %q", s, tt.in)
			}
			if c := got.Channel(); c != tt.channel {
				t.Errorf("channel %q, want %q", c, tt.channel)
			}
			any, err := ParseAnyVersion(tt.in)
			if err != nil || any != got {
				t.Errorf("ParseAnyVersion: %+v, %v", any, err)
			}
		})
	}
}

func TestVersionOrder(t *testing.T) {
	// Ascending.
	ordered := []string{"v0-sha.0000000", "v0-sha.abc1234", "v1-alpha.1", "v1-alpha.9", "v1-alpha.10", "v1-beta.0", "v1", "v2", "v9", "v10"}
	var versions []Version
	for _, s := range ordered {
		v, err := ParseVersion(s)
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	for i := range versions {
		for j := range versions {
			want := cmpInt(i, j)
			if got := versions[i].Compare(versions[j]); got != want {
				t.Errorf("%s.Compare(%s) = %d, want %d", versions[i], versions[j], got, want)
			}
		}
	}
	shuffled := slices.Clone(versions)
	slices.Reverse(shuffled)
	slices.SortFunc(shuffled, Version.Compare)
	if !slices.Equal(shuffled, versions) {
		t.Errorf("sorted %v, want %v", shuffled, versions)
	}
}

func TestParseRelease(t *testing.T) {
	tests := []struct {
		in           string
		want         Release
		clusterClass string
		wantErr      bool
	}{
		{in: "openstack-scs-1-32-v3", want: Release{"openstack", "scs", KubernetesMinor{1, 32}, Stable(3)}, clusterClass: "openstack-scs-1-32-v3"},
		{in: "docker-scs-1-34-v0-sha-lvlvyfw", want: Release{"docker", "scs", KubernetesMinor{1, 34}, Version{Kind: KindHash, Hash: "lvlvyfw"}}, clusterClass: "docker-scs-1-34-v0-sha.lvlvyfw"},
		{in: "openstack-scs-1-32-v1-alpha-1", want: Release{"openstack", "scs", KubernetesMinor{1, 32}, Version{Major: 1, Kind: KindPreRelease, PreRelease: "alpha", Patch: 1}}, clusterClass: "openstack-scs-1-32-v1-alpha.1"},
		{in: "openstack-scs2-1-9-v10", want: Release{"openstack", "scs2", KubernetesMinor{1, 9}, Stable(10)}, clusterClass: "openstack-scs2-1-9-v10"},
		{in: "", wantErr: true},
		{in: "openstack-scs-1-32", wantErr: true},
		{in: "open-stack-scs-1-32-v1", wantErr: true}, // '-' in the provider
		{in: "openstack-scs-x-1-32-v1", wantErr: true},
		{in: "openstack-scs-1-32-v0-sha.abc1234", wantErr: true}, // dotted form is not a release name
		{in: "OpenStack-scs-1-32-v1", wantErr: true},
		{in: "1openstack-scs-1-32-v1", wantErr: true},
		{in: "openstack--1-32-v1", wantErr: true},
		{in: "openstack-scs-0-32-v1", wantErr: true},
		{in: "openstack-scs-1-032-v1", wantErr: true},
		{in: "openstack-scs-1-32-1", wantErr: true},
		{in: "openstack-scs-1-32-v1-", wantErr: true},
		{in: "openstack_x-scs-1-32-v1", wantErr: true},
		{in: "openstack-scs-1-32-v99999999999999999999999999999", wantErr: true},
		{in: "openstack-scs-99999999999999999999-32-v1", wantErr: true},
		{in: "openstack-scs-1-32-v1-alpha-99999999999999999999", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidName) {
					t.Fatalf("got %+v, %v; want ErrInvalidName", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
			if got.ClusterClassName() != tt.clusterClass {
				t.Errorf("ClusterClassName() = %q, want %q", got.ClusterClassName(), tt.clusterClass)
			}
			cc, err := ParseClusterClassName(tt.clusterClass)
			if err != nil || cc != got {
				t.Errorf("ParseClusterClassName(%q) = %+v, %v", tt.clusterClass, cc, err)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestParseClusterClassNameRejectsDashedHash(t *testing.T) {
	if _, err := ParseClusterClassName("openstack-scs-1-32-v0-sha-abc1234"); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("got %v, want ErrInvalidName", err)
	}
}

func TestKubernetesMinor(t *testing.T) {
	tests := []struct {
		in      string
		parse   func(string) (KubernetesMinor, error)
		want    KubernetesMinor
		wantErr bool
	}{
		{in: "1.32", parse: ParseKubernetesMinor, want: KubernetesMinor{1, 32}},
		{in: "1-32", parse: ParseDashedKubernetesMinor, want: KubernetesMinor{1, 32}},
		{in: "v1.32.5", parse: KubernetesMinorOf, want: KubernetesMinor{1, 32}},
		{in: "1.30.0-rc.1", parse: KubernetesMinorOf, want: KubernetesMinor{1, 30}},
		{in: "1-32", parse: ParseKubernetesMinor, wantErr: true},
		{in: "1.32", parse: ParseDashedKubernetesMinor, wantErr: true},
		{in: "1.32.x", parse: ParseKubernetesMinor, wantErr: true},
		{in: "v1.32", parse: KubernetesMinorOf, wantErr: true},
		{in: "v1.32.", parse: KubernetesMinorOf, wantErr: true},
		{in: "0.1", parse: ParseKubernetesMinor, wantErr: true},
		{in: "1.", parse: ParseKubernetesMinor, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := tt.parse(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidVersion) {
					t.Fatalf("got %+v, %v; want ErrInvalidVersion", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
			if back, err := ParseKubernetesMinor(got.String()); err != nil || back != got {
				t.Errorf("round trip of %q: %+v, %v", got.String(), back, err)
			}
			if back, err := ParseDashedKubernetesMinor(got.Dashed()); err != nil || back != got {
				t.Errorf("round trip of %q: %+v, %v", got.Dashed(), back, err)
			}
		})
	}
	a, b := KubernetesMinor{1, 10}, KubernetesMinor{1, 9}
	if a.Compare(b) != 1 || b.Compare(a) != -1 || a.Compare(a) != 0 {
		t.Error("1.10 must sort after 1.9")
	}
}
