package api

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// clientAddress returns how the server tells callers apart before they authenticate
// (the rate limits, the failed-authentication limit, the request log): the address of
// the connection's peer, or — only when that peer is one of the trusted proxies — the
// right-most address of X-Forwarded-For that is not a trusted proxy. That is the
// address the outermost trusted proxy saw; what a client wrote into the header itself
// lies to its left and is never read, so a client cannot choose its own identity.
// Without trusted proxies the header is ignored.
func clientAddress(trusted []netip.Prefix) func(*http.Request) string {
	isTrusted := func(a netip.Addr) bool {
		return slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	return func(r *http.Request) string {
		peer, ok := parseAddr(r.RemoteAddr)
		if !ok {
			return r.RemoteAddr
		}
		if !isTrusted(peer) {
			return peer.String()
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
		return client.String()
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
