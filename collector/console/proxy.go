package console

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// TrustedProxies are the reverse proxies (by address range) whose
// X-Forwarded-For and X-Forwarded-Proto headers are believed. From any other
// peer those headers are ignored: a client can write them itself, and a
// believed X-Forwarded-For would let it pick the address sign-in attempts
// are counted against. The zero value trusts nobody.
type TrustedProxies struct{ ranges []netip.Prefix }

// ParseTrustedProxies reads "10.0.0.0/8, 192.168.1.10" (a bare address is
// a range of one).
func ParseTrustedProxies(s string) (TrustedProxies, error) {
	var p TrustedProxies
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pre, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return TrustedProxies{}, fmt.Errorf("trusted proxy %q is not an address or CIDR range", f)
			}
			pre = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		p.ranges = append(p.ranges, pre.Masked())
	}
	return p, nil
}

// String lists the ranges, for the log.
func (p TrustedProxies) String() string {
	s := make([]string, len(p.ranges))
	for i, r := range p.ranges {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}

func (p TrustedProxies) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, r := range p.ranges {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

// peer is the address of the direct TCP peer.
func peer(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// ClientIP is the address a request is attributed to (sign-in rate limits,
// the log): the direct peer, unless that is a trusted proxy, in which case
// X-Forwarded-For is walked from the right (each proxy appends the address
// it received from) past trusted proxies to the first address that is not
// one. Entries left of that were written by the client and are never used.
func (p TrustedProxies) ClientIP(r *http.Request) string {
	a, ok := peer(r)
	if !ok {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return r.RemoteAddr
		}
		return host
	}
	if !p.trusted(a) {
		return a.String()
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		h, ok := parseHop(hops[i])
		if !ok {
			// A trusted proxy forwarded something unreadable: attribute
			// the request to the last hop known for certain.
			break
		}
		a = h
		if !p.trusted(h) {
			break
		}
	}
	return a.String()
}

// parseHop reads one X-Forwarded-For entry: an address, possibly with a
// port ("1.2.3.4:5678", "[::1]:5678").
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// Secure reports whether the browser reached us over HTTPS: this
// connection is TLS, or a trusted proxy says (X-Forwarded-Proto) that the
// browser's connection to it was. Cookies are marked Secure and HSTS is
// sent when it is.
func (p TrustedProxies) Secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	a, ok := peer(r)
	if !ok || !p.trusted(a) {
		return false
	}
	// The first value is the outermost proxy's, the scheme the browser used.
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	return strings.EqualFold(strings.TrimSpace(proto), "https")
}

// HSTSMaxAge is a year, the usual value; browsers then refuse plain HTTP to
// the console's name and any certificate they cannot verify.
const HSTSMaxAge = 31536000

// HSTS sets Strict-Transport-Security on every response to a request that
// arrived over HTTPS (Secure), so browsers never fall back to plain HTTP.
func (p TrustedProxies) HSTS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.Secure(r) {
			w.Header().Set("Strict-Transport-Security", fmt.Sprintf("max-age=%d", HSTSMaxAge))
		}
		next.ServeHTTP(w, r)
	})
}
