// Package egress decides where the operator may connect to when it fetches content named by
// others: release sources (OCI registries, GitHub), node image URLs, chart repositories. Such
// URLs come from ClusterStacks and releases, which the operator's administrator does not write,
// so without a policy they reach the manager's own network position: loopback services, the
// cloud's metadata service (credentials), the kubelet, private networks.
//
// The check runs when connecting (net.Dialer.ControlContext sees the address actually dialled),
// so neither a redirect nor a DNS answer, nor one that changes between two lookups, gets around
// it. For URLs that someone else fetches (Glance's web-download import), CheckURL resolves the
// host and checks every address before the URL is handed over.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// Flags that relax the policy, named in refusals so that an administrator knows what to change.
const (
	FlagAllowCIDRs   = "--egress-allow-cidrs"
	FlagAllowHosts   = "--egress-allow-hosts"
	FlagAllowPrivate = "--egress-allow-private"
)

// ErrRefused is matched (errors.Is) by every *RefusedError.
var ErrRefused = errors.New("destination refused by the operator's egress policy")

// RefusedError says that a destination was refused and by which rule. It is bad input, not an
// outage: retrying the same URL cannot succeed until the URL or the policy changes.
type RefusedError struct {
	// Host is the host name or address asked for (may be empty when only the address is known).
	Host string
	// Addr is the refused address.
	Addr netip.Addr
	// Rule names the refused range, e.g. "loopback" or "private (RFC 1918)".
	Rule string
}

func (e *RefusedError) Error() string {
	host := e.Host
	if host == "" || host == e.Addr.String() {
		host = e.Addr.String()
	} else {
		host = fmt.Sprintf("%s (%s)", host, e.Addr)
	}
	relax := FlagAllowCIDRs + " or " + FlagAllowHosts
	if e.Rule == rulePrivate4 || e.Rule == rulePrivate6 || e.Rule == ruleCGNAT {
		relax = FlagAllowPrivate + ", " + relax
	}
	return fmt.Sprintf("connecting to %s: %s addresses are refused by the operator's egress policy (an administrator can allow them with %s)", host, e.Rule, relax)
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

const (
	ruleLoopback    = "loopback"
	ruleLinkLocal   = "link-local"
	ruleMetadata    = "cloud metadata"
	ruleUnspecified = "unspecified"
	ruleMulticast   = "multicast"
	ruleBroadcast   = "broadcast"
	rulePrivate4    = "private (RFC 1918)"
	rulePrivate6    = "unique local (fc00::/7)"
	ruleCGNAT       = "shared address space (100.64.0.0/10)"
	ruleReserved    = "reserved"
)

type rangeRule struct {
	prefix netip.Prefix
	rule   string
}

// metadata lists the instance metadata services of the clouds the operator runs in; they are
// refused even when private ranges are allowed, since they hand out credentials.
var metadata = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // OpenStack, AWS, GCP, Azure
	netip.MustParseAddr("fd00:ec2::254"),   // AWS over IPv6
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
}

// always lists ranges refused whatever AllowPrivate says.
var always = []rangeRule{
	{netip.MustParsePrefix("0.0.0.0/8"), ruleUnspecified},
	{netip.MustParsePrefix("127.0.0.0/8"), ruleLoopback},
	{netip.MustParsePrefix("169.254.0.0/16"), ruleLinkLocal},
	{netip.MustParsePrefix("224.0.0.0/4"), ruleMulticast},
	{netip.MustParsePrefix("255.255.255.255/32"), ruleBroadcast},
	{netip.MustParsePrefix("240.0.0.0/4"), ruleReserved},
	{netip.MustParsePrefix("::/128"), ruleUnspecified},
	{netip.MustParsePrefix("::1/128"), ruleLoopback},
	{netip.MustParsePrefix("fe80::/10"), ruleLinkLocal},
	{netip.MustParsePrefix("ff00::/8"), ruleMulticast},
}

// private lists ranges refused unless AllowPrivate is set.
var private = []rangeRule{
	{netip.MustParsePrefix("10.0.0.0/8"), rulePrivate4},
	{netip.MustParsePrefix("172.16.0.0/12"), rulePrivate4},
	{netip.MustParsePrefix("192.168.0.0/16"), rulePrivate4},
	{netip.MustParsePrefix("100.64.0.0/10"), ruleCGNAT},
	{netip.MustParsePrefix("fc00::/7"), rulePrivate6},
}

// nat64 embeds an IPv4 address in its last 32 bits; a NAT64 gateway would connect to it.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Policy is the operator-wide outbound policy. The zero value is the default: public addresses
// only. A Policy is immutable after construction and safe for concurrent use.
type Policy struct {
	// AllowPrivate allows the private ranges (RFC 1918, fc00::/7, 100.64.0.0/10), for sites whose
	// registries and image mirrors live on a private network. Loopback, link-local, metadata,
	// multicast and unspecified addresses stay refused.
	AllowPrivate bool
	// AllowCIDRs are allowed whatever else the policy says (even loopback): an explicit choice of
	// the administrator.
	AllowCIDRs []netip.Prefix
	// AllowHosts are host names (exact, case-insensitive; "*.example.org" for sub-domains) whose
	// connections are not checked: for a mirror at a fixed name on a private network.
	AllowHosts []string
}

// AllowLoopbackForTests returns a policy that also allows 127.0.0.0/8 and ::1, the addresses of
// the in-process doubles tests run against. Production code never uses it.
func AllowLoopbackForTests() *Policy {
	return &Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
}

// Default is the policy used when none is configured: public addresses only.
func Default() *Policy { return &Policy{} }

// ParseCIDRs parses a comma-separated list of CIDRs (or single addresses), as the flag takes it.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("parsing %s entry %q: %w", FlagAllowCIDRs, f, err)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("parsing %s entry %q: %w", FlagAllowCIDRs, f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ParseHosts parses a comma-separated list of host names, as the flag takes it.
func ParseHosts(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "" {
			continue
		}
		name := strings.TrimPrefix(f, "*.")
		if name == "" || strings.ContainsAny(name, "/:*@ ") {
			return nil, fmt.Errorf("parsing %s entry %q: not a host name (no scheme, port or path)", FlagAllowHosts, f)
		}
		out = append(out, f)
	}
	return out, nil
}

func (p *Policy) policy() *Policy {
	if p == nil {
		return Default()
	}
	return p
}

// CheckAddr returns a *RefusedError when addr may not be connected to; host is only used in the
// message.
func (p *Policy) CheckAddr(host string, addr netip.Addr) error {
	p = p.policy()
	addr = addr.Unmap()
	if addr.Is6() && nat64.Contains(addr) {
		b := addr.As16()
		if err := p.CheckAddr(host, netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})); err != nil {
			return err
		}
	}
	addr = addr.WithZone("")
	for _, c := range p.AllowCIDRs {
		if c.Contains(addr) {
			return nil
		}
	}
	if slices.Contains(metadata, addr) {
		return &RefusedError{Host: host, Addr: addr, Rule: ruleMetadata}
	}
	for _, r := range always {
		if r.prefix.Contains(addr) {
			return &RefusedError{Host: host, Addr: addr, Rule: r.rule}
		}
	}
	if !p.AllowPrivate {
		for _, r := range private {
			if r.prefix.Contains(addr) {
				return &RefusedError{Host: host, Addr: addr, Rule: r.rule}
			}
		}
	}
	return nil
}

// hostAllowed reports whether host is on the AllowHosts list.
func (p *Policy) hostAllowed(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, h := range p.policy().AllowHosts {
		if sub, ok := strings.CutPrefix(h, "*."); ok {
			if strings.HasSuffix(host, "."+sub) {
				return true
			}
		} else if host == h {
			return true
		}
	}
	return false
}

// Resolver looks host names up; net.DefaultResolver in production.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// CheckURL checks a URL that someone else will fetch (Glance's web-download): its scheme must be
// http or https, and every address its host resolves to must be allowed. It cannot stop the
// fetcher's own later lookup from getting another answer; it stops every URL that names a
// refused address or a name that resolves to one now.
func (p *Policy) CheckURL(ctx context.Context, raw string, r Resolver) error {
	u, err := url.Parse(raw)
	if err != nil {
		return &URLError{URL: raw, Err: err}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return &URLError{URL: raw, Err: fmt.Errorf("scheme %q is not http or https: %w", u.Scheme, ErrRefused)}
	}
	host := u.Hostname()
	if host == "" {
		return &URLError{URL: raw, Err: fmt.Errorf("no host: %w", ErrRefused)}
	}
	if p.hostAllowed(host) {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if err := p.CheckAddr(host, a); err != nil {
			return &URLError{URL: raw, Err: err}
		}
		return nil
	}
	if numericHost(host) {
		// C resolvers (inet_aton) read 2130706433, 0x7f.1 or 017700000001 as 127.0.0.1; Go does
		// not, so the fetcher and this check could disagree on what the host is.
		return &URLError{URL: raw, Err: fmt.Errorf("host %q is a non-canonical IP address: %w", host, ErrRefused)}
	}
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return &URLError{URL: raw, Err: fmt.Errorf("resolving %s: %w", host, err)}
	}
	for _, a := range addrs {
		if err := p.CheckAddr(host, a); err != nil {
			return &URLError{URL: raw, Err: err}
		}
	}
	return nil
}

// numericHost reports whether host is a number form of an IPv4 address that inet_aton accepts:
// one to four dot-separated parts, each decimal, octal or 0x-hexadecimal.
func numericHost(host string) bool {
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	if len(parts) > 4 {
		return false
	}
	for _, p := range parts {
		p = strings.ToLower(p)
		digits := "0123456789"
		if h, ok := strings.CutPrefix(p, "0x"); ok {
			p, digits = h, "0123456789abcdef"
			if p == "" {
				continue
			}
		}
		if p == "" || strings.Trim(p, digits) != "" {
			return false
		}
	}
	return true
}

// URLError names the URL a refusal is about.
type URLError struct {
	URL string
	Err error
}

func (e *URLError) Error() string { return fmt.Sprintf("checking URL %s: %v", e.URL, e.Err) }
func (e *URLError) Unwrap() error { return e.Err }

// dialContext dials like a net.Dialer with the policy applied to the address actually connected
// to. Host names on AllowHosts are dialled unchecked; so are the proxy addresses (host:port) in
// proxies, and only at their port.
func (p *Policy) dialContext(d *net.Dialer, proxies []string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if p.hostAllowed(host) || slices.Contains(proxies, net.JoinHostPort(strings.ToLower(host), port)) {
			return d.DialContext(ctx, network, addr)
		}
		checked := *d
		checked.ControlContext = func(_ context.Context, _, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("parsing dialled address %q: %w", address, err)
			}
			return p.CheckAddr(host, ap.Addr())
		}
		return checked.DialContext(ctx, network, addr)
	}
}

// Transport returns an HTTP transport (a clone of http.DefaultTransport's settings) whose
// connections obey the policy.
//
// Proxies: HTTPS_PROXY, HTTP_PROXY and NO_PROXY are honoured as by http.DefaultTransport, since
// some sites can only reach the internet through one. The proxy itself is the administrator's
// choice and its address (host:port) is dialled unchecked; the target of a proxied request is
// resolved and checked (CheckURL) before the request is handed to the proxy. A proxy should
// refuse internal ranges too: it resolves the name again, and a DNS answer that changes in
// between is beyond the operator's reach.
func (p *Policy) Transport() *http.Transport {
	t, ok := http.DefaultTransport.(*http.Transport)
	if ok {
		t = t.Clone()
	} else {
		// Someone replaced the default transport; start from the standard settings.
		t = &http.Transport{ForceAttemptHTTP2: true, MaxIdleConns: 100, IdleConnTimeout: 90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second, ExpectContinueTimeout: time.Second}
	}
	// The environment is read here, not on the first request as http.ProxyFromEnvironment does,
	// so that the proxies dialled unchecked are exactly the ones requests are sent to.
	cfg := httpproxy.FromEnvironment()
	proxyFor := cfg.ProxyFunc()
	var proxies []string
	for _, v := range []string{cfg.HTTPSProxy, cfg.HTTPProxy} {
		if a := proxyAddr(v); a != "" {
			proxies = append(proxies, a)
		}
	}
	t.Proxy = func(req *http.Request) (*url.URL, error) {
		u, err := proxyFor(req.URL)
		if err != nil || u == nil {
			return u, err
		}
		if err := p.CheckURL(req.Context(), req.URL.String(), nil); err != nil {
			return nil, err
		}
		return u, nil
	}
	t.DialContext = p.dialContext(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}, proxies)
	return t
}

// Client returns an HTTP client on Transport with the given overall timeout (0: none). Redirects
// are followed as usual; each new connection is checked.
func (p *Policy) Client(timeout time.Duration) *http.Client {
	return &http.Client{Transport: p.Transport(), Timeout: timeout}
}

// proxyAddr returns the host:port a proxy setting dials, as net/http does (port 80 for http
// proxies, 443 for https, 1080 for socks5).
func proxyAddr(v string) string {
	v = strings.TrimSpace(v)
	if v == "" {
		return ""
	}
	if !strings.Contains(v, "://") {
		v = "http://" + v
	}
	u, err := url.Parse(v)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443", "socks5": "1080", "socks5h": "1080"}[u.Scheme]
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}
