// Package name parses and prints the names and versions of cluster-stack
// releases as published by the Sovereign Cloud Stack tooling: release names
// (openstack-scs-1-32-v3), ClusterClass names (openstack-scs-1-32-v0-sha.abc1234),
// stack versions (v3, v0-sha.abc1234, v1-alpha.1) and Kubernetes minor
// versions (1.32 / 1-32).
//
// Two spellings exist for every version: the dotted form used in metadata.yaml,
// Helm chart versions and ClusterClass names, and the dashed form used in
// release, tag and object names where a '.' is not allowed. Both parse into the
// same Version and print back exactly.
package name

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalidVersion is wrapped by every version parse error.
var ErrInvalidVersion = errors.New("invalid version")

// Channel groups versions that are offered together.
type Channel string

const (
	// ChannelStable holds plain vN versions.
	ChannelStable Channel = "stable"
	// ChannelCustom holds hash-mode versions (v0-sha.xxxxxxx) built from
	// unreleased sources; they have no meaningful order among themselves.
	ChannelCustom Channel = "custom"
)

// hashChannel is the pre-release label SCS uses for hash mode. It is reserved:
// a pre-release channel with this name would be indistinguishable from a hash.
const hashChannel = "sha"

// hashLen is the length of the content hash in hash-mode versions.
const hashLen = 7

// Kind says which of the three version shapes a Version has.
type Kind int

// The order of the constants is the order of the kinds within one major
// version: a hash build sorts before pre-releases, which sort before the
// stable release they lead up to (as in SemVer).
const (
	KindHash Kind = iota
	KindPreRelease
	KindStable
)

// Version is a cluster-stack version. The zero value is not valid.
type Version struct {
	// Major is N in vN. It is 0 for hash versions and at least 1 otherwise.
	Major int
	// Kind tells how the remaining fields are used.
	Kind Kind
	// PreRelease is the channel name of a pre-release (alpha in v1-alpha.2).
	PreRelease string
	// Patch is the pre-release counter (2 in v1-alpha.2).
	Patch int
	// Hash is the content hash of a hash version (abc1234 in v0-sha.abc1234).
	Hash string
}

// Stable returns the stable version vN.
func Stable(major int) Version { return Version{Major: major, Kind: KindStable} }

// ParseVersion parses the dotted form used in metadata.yaml and chart versions:
// vN, v0-sha.xxxxxxx or vN-<channel>.<patch>.
func ParseVersion(s string) (Version, error) { return parseVersion(s, '.') }

// ParseDashedVersion parses the dashed form used in release and object names:
// vN, v0-sha-xxxxxxx or vN-<channel>-<patch>.
func ParseDashedVersion(s string) (Version, error) { return parseVersion(s, '-') }

// ParseAnyVersion accepts either form. The two forms never overlap, so this
// is unambiguous; it is meant for hand-written input such as metadata.yaml
// files of older releases.
func ParseAnyVersion(s string) (Version, error) {
	v, err := ParseVersion(s)
	if err == nil {
		return v, nil
	}
	if v, err2 := ParseDashedVersion(s); err2 == nil {
		return v, nil
	}
	return Version{}, err
}

func parseVersion(s string, sep byte) (Version, error) {
	fail := func(format string, args ...any) (Version, error) {
		return Version{}, fmt.Errorf("parsing version %q: %s: %w", s, fmt.Sprintf(format, args...), ErrInvalidVersion)
	}
	rest, ok := strings.CutPrefix(s, "v")
	if !ok {
		return fail("must start with 'v'")
	}
	majorStr, suffix, hasSuffix := strings.Cut(rest, "-")
	major, err := parseNumber(majorStr)
	if err != nil {
		return fail("major version: %v", err)
	}
	if !hasSuffix {
		if major < 1 {
			return fail("a stable version starts at v1")
		}
		return Stable(major), nil
	}
	i := strings.IndexByte(suffix, sep)
	if i < 0 {
		return fail("want <channel>%c<patch> after %q", sep, "v"+majorStr+"-")
	}
	label, tail := suffix[:i], suffix[i+1:]
	if err := checkLabel(label); err != nil {
		return fail("channel: %v", err)
	}
	if label == hashChannel {
		if major != 0 {
			return fail("hash versions are v0-sha%c<hash>", sep)
		}
		if err := checkHash(tail); err != nil {
			return fail("hash: %v", err)
		}
		return Version{Major: 0, Kind: KindHash, Hash: tail}, nil
	}
	if major < 1 {
		return fail("a pre-release version starts at v1")
	}
	patch, err := parseNumber(tail)
	if err != nil {
		return fail("patch of channel %q: %v", label, err)
	}
	return Version{Major: major, Kind: KindPreRelease, PreRelease: label, Patch: patch}, nil
}

// parseNumber accepts a decimal number without sign or leading zeros, so that
// printing it back gives the same text.
func parseNumber(s string) (int, error) {
	if s == "" {
		return 0, errors.New("empty number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a number", s)
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%q has a leading zero", s)
	}
	// Nine digits keep the value far from overflow on every platform.
	if len(s) > 9 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return n, nil
}

// checkLabel accepts a pre-release channel name: lowercase letters, then
// lowercase letters or digits. It must start with a letter so it can never be
// mistaken for a number.
func checkLabel(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if s[0] < 'a' || s[0] > 'z' {
		return fmt.Errorf("%q must start with a lowercase letter", s)
	}
	if !isLowerAlnum(s) {
		return fmt.Errorf("%q must be lowercase letters and digits", s)
	}
	return nil
}

func checkHash(s string) error {
	if len(s) != hashLen || !isLowerAlnum(s) {
		return fmt.Errorf("%q must be %d lowercase letters or digits", s, hashLen)
	}
	return nil
}

func isLowerAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// String prints the dotted form (metadata.yaml, chart versions, ClusterClass names).
func (v Version) String() string { return v.format('.') }

// Dashed prints the dashed form (release, tag and object names).
func (v Version) Dashed() string { return v.format('-') }

func (v Version) format(sep byte) string {
	switch v.Kind {
	case KindHash:
		return "v0-" + hashChannel + string(sep) + v.Hash
	case KindPreRelease:
		return "v" + strconv.Itoa(v.Major) + "-" + v.PreRelease + string(sep) + strconv.Itoa(v.Patch)
	default:
		return "v" + strconv.Itoa(v.Major)
	}
}

// Channel returns the channel of the version: stable for vN, custom for hash
// versions, and the pre-release label (alpha, beta, rc, ...) otherwise.
func (v Version) Channel() Channel {
	switch v.Kind {
	case KindHash:
		return ChannelCustom
	case KindPreRelease:
		return Channel(v.PreRelease)
	default:
		return ChannelStable
	}
}

// Compare returns -1, 0 or +1. The order is total and numeric: by major
// version, then hash < pre-release < stable, pre-releases by channel name and
// then numerically by patch (alpha.10 > alpha.9), hashes by their text (an
// arbitrary but stable tie-break: hash versions carry no order).
func (v Version) Compare(o Version) int {
	if c := cmpInt(v.Major, o.Major); c != 0 {
		return c
	}
	if c := cmpInt(int(v.Kind), int(o.Kind)); c != 0 {
		return c
	}
	switch v.Kind {
	case KindPreRelease:
		if c := strings.Compare(v.PreRelease, o.PreRelease); c != 0 {
			return c
		}
		return cmpInt(v.Patch, o.Patch)
	case KindHash:
		return strings.Compare(v.Hash, o.Hash)
	}
	return 0
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
