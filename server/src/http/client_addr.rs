//! The client's address: the TCP peer, or, when the peer is one of `TRUSTED_PROXIES`, the
//! address that proxy (and any trusted proxy before it) saw, from `X-Forwarded-For`. Every
//! per-address limit keys on it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header::HeaderName, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use super::AppState;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client address of a request (a request extension, set by [`resolve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// Requests without a peer (in-process tests) share one "unspecified" address.
    pub fn of(request: &Request) -> IpAddr {
        request
            .extensions()
            .get::<ClientAddr>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.0)
    }
}

/// `TRUSTED_PROXIES`: networks whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// A comma-separated list of CIDRs (`10.0.0.0/8`) or single addresses; the entry that is
    /// neither is the error.
    pub fn parse(raw: &str) -> Result<TrustedProxies, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| entry.to_owned())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`: walking `X-Forwarded-For` from the right (the entry the
    /// nearest proxy appended), the first address that is not itself a trusted proxy. Anything
    /// left of it could have been written by the client, so it is never read. An entry that is
    /// not an address stops the walk at the last trusted hop.
    pub fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        let entries = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','));
        for entry in entries.rev() {
            let Some(hop) = parse_hop(entry) else {
                break;
            };
            client = hop;
            if !self.contains(hop) {
                break;
            }
        }
        client
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443` (proxies write all four).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse().ok())
        })
        .map(canonical)
}

/// `::ffff:10.0.0.1` is 10.0.0.1 (dual-stack listeners report IPv4 peers that way).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Middleware: stores the request's [`ClientAddr`].
pub async fn resolve(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if let Some(peer) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
    {
        let client = state
            .config
            .http
            .trusted_proxies
            .client_addr(peer, request.headers());
        request.extensions_mut().insert(ClientAddr(client));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(&X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn parses_cidrs_and_addresses() {
        let proxies = TrustedProxies::parse(" 10.0.0.0/8, 192.168.1.7 ,2001:db8::/32,").unwrap();
        assert!(proxies.contains(ip("10.200.0.1")));
        assert!(proxies.contains(ip("192.168.1.7")));
        assert!(!proxies.contains(ip("192.168.1.8")));
        assert!(proxies.contains(ip("2001:db8:ffff::1")));
        assert!(proxies.contains(ip("::ffff:10.0.0.1")), "IPv4-mapped");
        // Host bits are ignored: 10.1.2.3/8 means 10.0.0.0/8.
        assert!(TrustedProxies::parse("10.1.2.3/8")
            .unwrap()
            .contains(ip("10.9.9.9")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        for bad in ["10.0.0.0/33", "proxy.internal", "10.0.0.0/8;", "::/129"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let peer = ip("203.0.113.9");
        assert_eq!(proxies.client_addr(peer, &xff(&["198.51.100.1"])), peer);
        assert_eq!(
            TrustedProxies::default().client_addr(ip("10.0.0.1"), &xff(&["198.51.100.1"])),
            ip("10.0.0.1"),
            "no TRUSTED_PROXIES: the peer, as before"
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let proxies = TrustedProxies::parse("10.0.0.0/8,2001:db8::/32").unwrap();
        let peer = ip("10.0.0.2");
        // The client may write anything left of what our proxies appended.
        let spoofed = xff(&["1.1.1.1, 198.51.100.7, 10.0.0.5"]);
        assert_eq!(proxies.client_addr(peer, &spoofed), ip("198.51.100.7"));
        // Several header lines are one list, in order.
        let lines = xff(&["1.1.1.1", "198.51.100.7", "10.0.0.5"]);
        assert_eq!(proxies.client_addr(peer, &lines), ip("198.51.100.7"));
        // Ports and brackets, as some proxies write them.
        assert_eq!(
            proxies.client_addr(peer, &xff(&["198.51.100.7:5555"])),
            ip("198.51.100.7")
        );
        assert_eq!(
            proxies.client_addr(peer, &xff(&["[2001:db9::1]:443"])),
            ip("2001:db9::1")
        );
        // Only trusted hops: the left-most of them.
        assert_eq!(
            proxies.client_addr(peer, &xff(&["10.0.0.9, 10.0.0.5"])),
            ip("10.0.0.9")
        );
        // No header: the proxy itself.
        assert_eq!(proxies.client_addr(peer, &HeaderMap::new()), peer);
        // Garbage stops the walk at the last trusted hop; nothing left of it is read.
        assert_eq!(
            proxies.client_addr(peer, &xff(&["198.51.100.7, unknown, 10.0.0.5"])),
            ip("10.0.0.5")
        );
    }
}
