package egress

import (
	"context"
	"net/netip"
	"net/url"
	"testing"
)

// loopbackResolver answers every name with a loopback address, like a hostile DNS zone.
type loopbackResolver struct{}

func (loopbackResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("127.0.0.1")}, nil
}

// FuzzCheckURL: whatever the URL's spelling (IP literals in any form, zones, userinfo, odd
// schemes), with every name resolving to loopback the default policy accepts only http(s) URLs
// whose host is a public IP literal, judged here by the standard library's own predicates.
func FuzzCheckURL(f *testing.F) {
	for _, u := range []string{
		"http://127.0.0.1/", "http://[::ffff:127.0.0.1]/", "http://[fe80::1%25eth0]/", "http://0x7f.1/",
		"http://169.254.169.254@example.org/", "https://example.org:443/x", "http://2130706433/", "HTTP://LOCALHOST/",
	} {
		f.Add(u)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if err := Default().CheckURL(context.Background(), raw, loopbackResolver{}); err != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			t.Fatalf("CheckURL(%q) accepted a URL that is not http(s)", raw)
		}
		a, err := netip.ParseAddr(u.Hostname())
		if err != nil {
			t.Fatalf("CheckURL(%q) accepted a host name that resolves to loopback", raw)
		}
		a = a.Unmap()
		if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsPrivate() || a.IsUnspecified() || a.IsMulticast() {
			t.Fatalf("CheckURL(%q) accepted the internal address %s", raw, a)
		}
	})
}
