package api

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// clientAddress returns how the server tells callers apart before they authenticate
// (the rate limits and the failed-authentication limit; echo's RealIP): the client's
// address (see clientIP) as a bucket key. An IPv4 client is its address; an IPv6
// client is its /64 ("2001:db8:1:2::/64"), because whoever has one address of a /64
// usually has all 2^64 of them and would otherwise get a fresh budget with each. An
// IPv4-mapped IPv6 address is its IPv4 address. The request log does not show it.
func clientAddress(trusted []netip.Prefix) func(*http.Request) string {
	ip := clientIP(trusted)
	return func(r *http.Request) string {
		a, ok := ip(r)
		if !ok {
			return r.RemoteAddr
		}
		return bucket(a)
	}
}

// bucket is the limiters' key for the client at a: a for IPv4, a's /64 for IPv6.
func bucket(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a, 64).Masked().String()
}

// clientIP returns the client's address: the address of the connection's peer, or —
// only when that peer is one of the trusted proxies — the right-most address of
// X-Forwarded-For that is not a trusted proxy. That is the address the outermost
// trusted proxy saw; what a client wrote into the header itself lies to its left and
// is never read, so a client cannot choose its own identity. Without trusted proxies
// the header is ignored. It reports false when the peer's address cannot be read.
func clientIP(trusted []netip.Prefix) func(*http.Request) (netip.Addr, bool) {
	isTrusted := func(a netip.Addr) bool {
		return slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	return func(r *http.Request) (netip.Addr, bool) {
		peer, ok := parseAddr(r.RemoteAddr)
		if !ok {
			return netip.Addr{}, false
		}
		if !isTrusted(peer) {
			return peer, true
		}
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		client := peer
		for i := len(hops) - 1; i >= 0; i-- {
			a, ok := parseAddr(hops[i])
			if !ok {
				// Not an address: written by no proxy we know. Stop at the last hop
				// that was one (a trusted proxy: one bucket for what is behind it).
				break
			}
			client = a
			if !isTrusted(a) {
				break
			}
		}
		return client, true
	}
}

// parseAddr reads an address as RemoteAddr or X-Forwarded-For hold it: "ip",
// "ip:port", "[ipv6]" or "[ipv6]:port". An IPv4-mapped IPv6 address is its IPv4
// address; a zone is dropped.
func parseAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}
