package name

import "testing"

var versionSeeds = []string{"v1", "v10", "v0-sha.abc1234", "v0-sha-abc1234", "v1-alpha.1", "v1-alpha-1", "v01", "v1-sha.1", "", "v", "v1-", "v1-a.", "v0-sha.ABCDEFG"}

// The round-trip properties: whatever parses prints back to the exact input,
// and the printed other form parses to the same value.
func FuzzParseVersion(f *testing.F) {
	for _, s := range versionSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := ParseVersion(s); err == nil {
			if v.String() != s {
				t.Fatalf("ParseVersion(%q).String() = %q", s, v.String())
			}
			if d, err := ParseDashedVersion(v.Dashed()); err != nil || d != v {
				t.Fatalf("dashed round trip of %q: %+v, %v", s, d, err)
			}
			if v.Compare(v) != 0 {
				t.Fatalf("%q not equal to itself", s)
			}
		}
		if v, err := ParseDashedVersion(s); err == nil {
			if v.Dashed() != s {
				t.Fatalf("ParseDashedVersion(%q).Dashed() = %q", s, v.Dashed())
			}
			if d, err := ParseVersion(v.String()); err != nil || d != v {
				t.Fatalf("dotted round trip of %q: %+v, %v", s, d, err)
			}
		}
	})
}

func FuzzParseRelease(f *testing.F) {
	for _, s := range []string{"openstack-scs-1-32-v3", "docker-scs-1-34-v0-sha-lvlvyfw", "openstack-scs-1-32-v1-alpha-1", "open-stack-scs-1-32-v1", "a-b-1-0-v1", "--------"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		if r.String() != s {
			t.Fatalf("Parse(%q).String() = %q", s, r.String())
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("parsed %q does not validate: %v", s, err)
		}
		cc, err := ParseClusterClassName(r.ClusterClassName())
		if err != nil || cc != r {
			t.Fatalf("cluster class round trip of %q: %+v, %v", s, cc, err)
		}
	})
}

func FuzzParseClusterClassName(f *testing.F) {
	for _, s := range []string{"openstack-scs-1-32-v3", "openstack-scs-1-32-v0-sha.abc1234", "openstack-scs-1-32-v1-alpha.1", "x-y-1-2-v0-sha-abc1234"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseClusterClassName(s)
		if err != nil {
			return
		}
		if r.ClusterClassName() != s {
			t.Fatalf("ParseClusterClassName(%q).ClusterClassName() = %q", s, r.ClusterClassName())
		}
		back, err := Parse(r.String())
		if err != nil || back != r {
			t.Fatalf("release name round trip of %q: %+v, %v", s, back, err)
		}
	})
}

func FuzzKubernetesMinor(f *testing.F) {
	for _, s := range []string{"1.32", "1-32", "v1.32.5", "0.1", "01.2", "1.2.3-rc.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if k, err := ParseKubernetesMinor(s); err == nil && k.String() != s {
			t.Fatalf("ParseKubernetesMinor(%q).String() = %q", s, k.String())
		}
		if k, err := ParseDashedKubernetesMinor(s); err == nil && k.Dashed() != s {
			t.Fatalf("ParseDashedKubernetesMinor(%q).Dashed() = %q", s, k.Dashed())
		}
		if k, err := KubernetesMinorOf(s); err == nil {
			if back, err := ParseKubernetesMinor(k.String()); err != nil || back != k {
				t.Fatalf("KubernetesMinorOf(%q) = %+v does not round trip: %v", s, k, err)
			}
		}
	})
}
