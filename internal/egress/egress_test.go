package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestCheckAddr(t *testing.T) {
	private := &Policy{AllowPrivate: true}
	allow := &Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.1.0.0/16")}}
	tests := []struct {
		addr     string
		policy   *Policy
		wantRule string // "" = allowed
	}{
		{addr: "8.8.8.8"},
		{addr: "2001:4860:4860::8888"},
		{addr: "127.0.0.1", wantRule: ruleLoopback},
		{addr: "127.1.2.3", wantRule: ruleLoopback},
		{addr: "::1", wantRule: ruleLoopback},
		{addr: "::ffff:127.0.0.1", wantRule: ruleLoopback},
		{addr: "64:ff9b::7f00:1", wantRule: ruleLoopback},
		{addr: "169.254.169.254", wantRule: ruleMetadata},
		{addr: "::ffff:169.254.169.254", wantRule: ruleMetadata},
		{addr: "fd00:ec2::254", wantRule: ruleMetadata},
		{addr: "fd00:ec2::254", policy: private, wantRule: ruleMetadata},
		{addr: "100.100.100.200", policy: private, wantRule: ruleMetadata},
		{addr: "169.254.1.1", wantRule: ruleLinkLocal},
		{addr: "fe80::1", wantRule: ruleLinkLocal},
		{addr: "0.0.0.0", wantRule: ruleUnspecified},
		{addr: "::", wantRule: ruleUnspecified},
		{addr: "224.0.0.1", wantRule: ruleMulticast},
		{addr: "ff02::1", wantRule: ruleMulticast},
		{addr: "255.255.255.255", wantRule: ruleBroadcast},
		{addr: "10.0.0.1", wantRule: rulePrivate4},
		{addr: "172.16.5.4", wantRule: rulePrivate4},
		{addr: "192.168.1.1", wantRule: rulePrivate4},
		{addr: "100.64.0.1", wantRule: ruleCGNAT},
		{addr: "fd12::1", wantRule: rulePrivate6},
		{addr: "10.0.0.1", policy: private},
		{addr: "fd12::1", policy: private},
		{addr: "127.0.0.1", policy: private, wantRule: ruleLoopback},
		{addr: "127.0.0.1", policy: allow},
		{addr: "127.0.0.2", policy: allow, wantRule: ruleLoopback},
		{addr: "10.1.2.3", policy: allow},
		{addr: "10.2.0.1", policy: allow, wantRule: rulePrivate4},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%+v", tt.addr, tt.policy), func(t *testing.T) {
			err := tt.policy.CheckAddr("", netip.MustParseAddr(tt.addr))
			if tt.wantRule == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var re *RefusedError
			if !errors.As(err, &re) || !errors.Is(err, ErrRefused) || re.Rule != tt.wantRule {
				t.Fatalf("got %v, want a refusal by rule %q", err, tt.wantRule)
			}
		})
	}
}

func TestRefusalNamesTheFlag(t *testing.T) {
	err := Default().CheckAddr("mirror.internal", netip.MustParseAddr("10.0.0.1"))
	for _, want := range []string{"mirror.internal", "10.0.0.1", "private", FlagAllowPrivate, FlagAllowCIDRs} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not mention %q", err, want)
		}
	}
}

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestCheckURL(t *testing.T) {
	r := fakeResolver{
		"images.example.org": {netip.MustParseAddr("203.0.113.7")},
		"rebind.example.org": {netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("127.0.0.1")},
		"mirror.internal":    {netip.MustParseAddr("10.0.0.5")},
		"1.example.org":      {netip.MustParseAddr("203.0.113.8")},
		"deadbeef.cafe":      {netip.MustParseAddr("203.0.113.9")},
	}
	hosts := &Policy{AllowHosts: []string{"mirror.internal"}}
	tests := []struct {
		url     string
		policy  *Policy
		refused bool
	}{
		{url: "https://images.example.org/ubuntu.qcow2"},
		{url: "https://1.example.org/x"},
		{url: "https://deadbeef.cafe/x"},
		{url: "http://127.0.0.1/x", refused: true},
		{url: "http://[::1]:10250/", refused: true},
		{url: "http://169.254.169.254/latest/meta-data/", refused: true},
		{url: "http://[::ffff:169.254.169.254]/", refused: true},
		{url: "http://rebind.example.org/x", refused: true},
		{url: "http://mirror.internal/x", refused: true},
		{url: "http://mirror.internal/x", policy: hosts},
		{url: "http://2130706433/", refused: true},
		{url: "http://0x7f.1/", refused: true},
		{url: "http://017700000001/", refused: true},
		{url: "http://0x7f000001/", refused: true},
		{url: "file:///etc/passwd", refused: true},
		{url: "ftp://images.example.org/x", refused: true},
		{url: "http:///nohost", refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			err := tt.policy.CheckURL(context.Background(), tt.url, r)
			if tt.refused != errors.Is(err, ErrRefused) {
				t.Fatalf("got %v, refused=%v wanted", err, tt.refused)
			}
			if tt.refused && !strings.Contains(err.Error(), tt.url) {
				t.Errorf("%q does not name the URL", err)
			}
		})
	}
	if err := Default().CheckURL(context.Background(), "http://missing.example.org/", r); err == nil || errors.Is(err, ErrRefused) {
		t.Errorf("an unresolvable host: got %v, want a lookup error (retryable), not a refusal", err)
	}
}

func TestParseFlags(t *testing.T) {
	cidrs, err := ParseCIDRs(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,")
	if err != nil || len(cidrs) != 3 || cidrs[1] != netip.MustParsePrefix("192.168.1.7/32") {
		t.Fatalf("ParseCIDRs: %v, %v", cidrs, err)
	}
	if _, err := ParseCIDRs("10.0.0.0/33"); err == nil {
		t.Error("ParseCIDRs accepted a bad prefix")
	}
	hosts, err := ParseHosts("Mirror.Example.org, *.images.internal")
	if err != nil || len(hosts) != 2 || hosts[0] != "mirror.example.org" {
		t.Fatalf("ParseHosts: %v, %v", hosts, err)
	}
	for _, bad := range []string{"http://x", "x:80", "*.", "a/b"} {
		if _, err := ParseHosts(bad); err == nil {
			t.Errorf("ParseHosts(%q) accepted", bad)
		}
	}
	p := &Policy{AllowHosts: hosts}
	for host, want := range map[string]bool{"mirror.example.org": true, "MIRROR.example.org.": true, "a.images.internal": true, "images.internal": false, "evil.org": false} {
		if got := p.hostAllowed(host); got != want {
			t.Errorf("hostAllowed(%q) = %v", host, got)
		}
	}
}

// serve starts an HTTP server on addr (e.g. "127.0.0.2:0").
func serve(t *testing.T, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	s := &httptest.Server{Listener: l, Config: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// TestClientRefusesAtConnect runs real connections: the default policy refuses loopback by
// address and by name, the metadata address, and a redirect from an allowed server to a refused
// one; the loopback allowance of tests lets the same requests through.
func TestClientRefusesAtConnect(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("secret")) })
	loop4 := serve(t, "127.0.0.1:0", ok)
	loop2 := serve(t, "127.0.0.2:0", ok)
	redirector := serve(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, loop2.URL+"/token", http.StatusFound)
	}))
	_, port, _ := net.SplitHostPort(loop4.Listener.Addr().String())
	only1 := &Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}

	tests := []struct {
		name    string
		policy  *Policy
		url     string
		refused bool
	}{
		{name: "loopback v4", url: loop4.URL, refused: true},
		{name: "localhost resolves to loopback", url: "http://localhost:" + port + "/", refused: true},
		{name: "metadata", url: "http://169.254.169.254/latest/meta-data/", refused: true},
		{name: "metadata v6", url: "http://[fd00:ec2::254]/", refused: true},
		{name: "mapped metadata", url: "http://[::ffff:169.254.169.254]/", refused: true},
		{name: "redirect to a refused address", policy: only1, url: redirector.URL, refused: true},
		{name: "allowed address", policy: only1, url: loop4.URL},
		{name: "loopback allowed for tests", policy: AllowLoopbackForTests(), url: loop4.URL},
		{name: "redirect allowed for tests", policy: AllowLoopbackForTests(), url: redirector.URL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tt.url, nil)
			resp, err := tt.policy.Client(0).Do(req)
			if resp != nil {
				resp.Body.Close()
			}
			if tt.refused {
				if !errors.Is(err, ErrRefused) {
					t.Fatalf("got %v, want a refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("loopback v6", func(t *testing.T) {
		s := serve(t, "[::1]:0", ok)
		_, err := Default().Client(0).Get(s.URL)
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("got %v, want a refusal", err)
		}
		resp, err := AllowLoopbackForTests().Client(0).Get(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	})
}

// TestProxy: with HTTP_PROXY set, the proxy (on loopback here) is dialled although loopback is
// refused, a proxied request's target is checked before it is handed over, and loopback targets
// are never proxied, so they meet the connect-time check.
func TestProxy(t *testing.T) {
	var proxied []string
	proxy := serve(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied = append(proxied, r.URL.String())
		_, _ = w.Write([]byte("via proxy"))
	}))
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("NO_PROXY", "")
	c := Default().Client(10 * time.Second)

	resp, err := c.Get("http://203.0.113.10/image.qcow2")
	if err != nil {
		t.Fatalf("public target through the proxy: %v", err)
	}
	resp.Body.Close()
	if len(proxied) != 1 || proxied[0] != "http://203.0.113.10/image.qcow2" {
		t.Fatalf("proxy saw %v", proxied)
	}
	for _, u := range []string{"http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x", "http://127.0.0.1:1/", "http://[::1]:1/"} {
		if _, err := c.Get(u); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: got %v, want a refusal", u, err)
		}
	}
	if len(proxied) != 1 {
		t.Errorf("refused targets reached the proxy: %v", proxied)
	}
}
