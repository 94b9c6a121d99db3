package name

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalidName is wrapped by every release or ClusterClass name parse error.
var ErrInvalidName = errors.New("invalid name")

// KubernetesMinor is a Kubernetes major.minor pair, 1.32.
type KubernetesMinor struct {
	Major int
	Minor int
}

// ParseKubernetesMinor parses "1.32".
func ParseKubernetesMinor(s string) (KubernetesMinor, error) { return parseMinor(s, ".") }

// ParseDashedKubernetesMinor parses "1-32", the form used inside names.
func ParseDashedKubernetesMinor(s string) (KubernetesMinor, error) { return parseMinor(s, "-") }

// KubernetesMinorOf returns the minor version of a full Kubernetes version
// such as v1.32.5 (the form in metadata.yaml). A missing 'v' is accepted.
func KubernetesMinorOf(version string) (KubernetesMinor, error) {
	s := strings.TrimPrefix(version, "v")
	parts := strings.SplitN(s, ".", 3)
	if len(parts) != 3 {
		return KubernetesMinor{}, fmt.Errorf("parsing kubernetes version %q: want v<major>.<minor>.<patch>: %w", version, ErrInvalidVersion)
	}
	// The patch may carry a pre-release or build suffix (1.32.0-rc.1+abc).
	patch, _, _ := strings.Cut(parts[2], "-")
	patch, _, _ = strings.Cut(patch, "+")
	if _, err := parseNumber(patch); err != nil {
		return KubernetesMinor{}, fmt.Errorf("parsing kubernetes version %q: patch: %w: %w", version, err, ErrInvalidVersion)
	}
	m, err := parseMinor(parts[0]+"."+parts[1], ".")
	if err != nil {
		return KubernetesMinor{}, fmt.Errorf("parsing kubernetes version %q: %w", version, err)
	}
	return m, nil
}

func parseMinor(s, sep string) (KubernetesMinor, error) {
	majStr, minStr, ok := strings.Cut(s, sep)
	if !ok {
		return KubernetesMinor{}, fmt.Errorf("parsing kubernetes minor version %q: want <major>%s<minor>: %w", s, sep, ErrInvalidVersion)
	}
	maj, err := parseNumber(majStr)
	if err == nil && maj < 1 {
		err = errors.New("major must be at least 1")
	}
	if err != nil {
		return KubernetesMinor{}, fmt.Errorf("parsing kubernetes minor version %q: major: %w: %w", s, err, ErrInvalidVersion)
	}
	minor, err := parseNumber(minStr)
	if err != nil {
		return KubernetesMinor{}, fmt.Errorf("parsing kubernetes minor version %q: minor: %w: %w", s, err, ErrInvalidVersion)
	}
	return KubernetesMinor{Major: maj, Minor: minor}, nil
}

// String prints "1.32".
func (k KubernetesMinor) String() string {
	return strconv.Itoa(k.Major) + "." + strconv.Itoa(k.Minor)
}

// Dashed prints "1-32".
func (k KubernetesMinor) Dashed() string {
	return strconv.Itoa(k.Major) + "-" + strconv.Itoa(k.Minor)
}

// Compare orders numerically (1.10 > 1.9).
func (k KubernetesMinor) Compare(o KubernetesMinor) int {
	if c := cmpInt(k.Major, o.Major); c != 0 {
		return c
	}
	return cmpInt(k.Minor, o.Minor)
}

// Release is a parsed release name <provider>-<stack>-<maj>-<min>-<version>.
type Release struct {
	// Provider is the infrastructure provider, e.g. openstack.
	Provider string
	// Stack is the cluster-stack name, e.g. scs.
	Stack string
	// Kubernetes is the Kubernetes minor version the release is built for.
	Kubernetes KubernetesMinor
	// Version is the stack version.
	Version Version
}

// Parse parses a release name in its dashed form, e.g. openstack-scs-1-32-v3,
// docker-scs-1-34-v0-sha-lvlvyfw or openstack-scs-1-32-v1-alpha-1.
func Parse(s string) (Release, error) { return parseName(s, false) }

// MustParse is Parse for names known to be valid (literals in tests and fixtures); it panics on
// an invalid name.
func MustParse(s string) Release {
	n, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return n
}

// ParseClusterClassName parses the name of the ClusterClass a release
// installs: the release name with the version in its dotted form, e.g.
// openstack-scs-1-32-v0-sha.abc1234. For stable versions both are equal.
func ParseClusterClassName(s string) (Release, error) { return parseName(s, true) }

func parseName(s string, dotted bool) (Release, error) {
	what := "release name"
	if dotted {
		what = "cluster class name"
	}
	fail := func(err error) (Release, error) {
		return Release{}, fmt.Errorf("parsing %s %q: %w", what, s, err)
	}
	// Provider and stack cannot contain '-', so the first four dash-separated
	// fields are fixed and everything after them is the version. That makes
	// the parse unambiguous; a '-' inside the provider or stack shows up as a
	// non-numeric Kubernetes version, which the error message points out.
	parts := strings.SplitN(s, "-", 5)
	if len(parts) != 5 {
		return fail(fmt.Errorf("want <provider>-<stack>-<k8s major>-<k8s minor>-<version>: %w", ErrInvalidName))
	}
	if err := checkComponent("provider", parts[0]); err != nil {
		return fail(err)
	}
	if err := checkComponent("stack", parts[1]); err != nil {
		return fail(err)
	}
	k8s, err := parseMinor(parts[2]+"-"+parts[3], "-")
	if err != nil {
		if _, nerr := parseNumber(parts[2]); nerr != nil {
			return fail(fmt.Errorf("%q is not a kubernetes major version (provider and stack names must not contain '-'): %w", parts[2], ErrInvalidName))
		}
		return fail(fmt.Errorf("kubernetes version: %v: %w", err, ErrInvalidName))
	}
	var v Version
	if dotted {
		v, err = ParseVersion(parts[4])
	} else {
		v, err = ParseDashedVersion(parts[4])
	}
	if err != nil {
		return fail(fmt.Errorf("%v: %w", err, ErrInvalidName))
	}
	return Release{Provider: parts[0], Stack: parts[1], Kubernetes: k8s, Version: v}, nil
}

// checkComponent accepts a provider or stack name: lowercase letters and
// digits, starting with a letter.
func checkComponent(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s: %w", what, ErrInvalidName)
	}
	if s[0] < 'a' || s[0] > 'z' || !isLowerAlnum(s) {
		return fmt.Errorf("%s %q must be lowercase letters and digits starting with a letter: %w", what, s, ErrInvalidName)
	}
	return nil
}

// Validate checks the fields, so that a Release built by hand prints a name
// that parses back to itself.
func (r Release) Validate() error {
	if err := checkComponent("provider", r.Provider); err != nil {
		return err
	}
	if err := checkComponent("stack", r.Stack); err != nil {
		return err
	}
	if _, err := ParseDashedKubernetesMinor(r.Kubernetes.Dashed()); err != nil {
		return err
	}
	if _, err := ParseVersion(r.Version.String()); err != nil {
		return err
	}
	return nil
}

// Prefix returns <provider>-<stack>-<maj>-<min>, the Helm release name of the
// cluster-class chart and the stem of the archive file names.
func (r Release) Prefix() string {
	return r.Provider + "-" + r.Stack + "-" + r.Kubernetes.Dashed()
}

// String returns the release name (dashed version), the OCI tag and GitHub
// release tag.
func (r Release) String() string { return r.Prefix() + "-" + r.Version.Dashed() }

// ClusterClassName returns the name of the ClusterClass the release installs
// (dotted version), {{ .Release.Name }}-{{ .Chart.Version }} of its chart.
func (r Release) ClusterClassName() string { return r.Prefix() + "-" + r.Version.String() }

// Compare orders releases by provider, stack, Kubernetes minor and version.
func (r Release) Compare(o Release) int {
	if c := strings.Compare(r.Provider, o.Provider); c != 0 {
		return c
	}
	if c := strings.Compare(r.Stack, o.Stack); c != 0 {
		return c
	}
	if c := r.Kubernetes.Compare(o.Kubernetes); c != 0 {
		return c
	}
	return r.Version.Compare(o.Version)
}
