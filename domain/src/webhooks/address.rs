//! Which addresses a webhook may reach (against SSRF): an endpoint's host is resolved and every
//! address it resolves to must be public, when the endpoint is saved and again at every
//! connection (the worker's resolver refuses the same addresses, so a name that later
//! resolves to `127.0.0.1` is not called). Redirects are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use crate::error::{DomainError, DomainResult};

/// The longest endpoint URL.
pub const MAX_URL_LEN: usize = 2_000;

/// Whether `ip` is a public unicast address: not loopback, private, link-local, carrier-grade
/// NAT, unique-local, multicast, unspecified, documentation or reserved (IPv4-mapped and
/// -compatible IPv6 addresses are judged as the IPv4 address inside).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        || (first == 0 && ip.segments()[1..6].iter().all(|s| *s == 0)))
}

/// Parses and checks an endpoint URL: `http` or `https`, a host, no credentials, and (unless
/// `allow_private`) only public addresses for every address the host resolves to now.
pub(crate) async fn check_url(raw: &str, allow_private: bool) -> DomainResult<Url> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > MAX_URL_LEN {
        return Err(DomainError::validation(format!(
            "url must be 1–{MAX_URL_LEN} characters"
        )));
    }
    let url = Url::parse(raw).map_err(|err| DomainError::validation(format!("url: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(DomainError::validation(
            "url must start with http:// or https://",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(DomainError::validation(
            "url must not carry credentials; the signature authenticates each delivery",
        ));
    }
    let Some(host) = url.host_str().map(str::to_owned) else {
        return Err(DomainError::validation("url must name a host"));
    };
    if allow_private {
        return Ok(url);
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|err| DomainError::validation(format!("url: cannot resolve {host}: {err}")))?
        .collect();
    if addresses.is_empty() {
        return Err(DomainError::validation(format!(
            "url: {host} resolves to no address"
        )));
    }
    if let Some(refused) = addresses.iter().find(|a| !is_public(a.ip())) {
        return Err(DomainError::validation(format!(
            "url: {host} resolves to {}, a loopback, private or otherwise non-public address \
             (the deployment's WEBHOOK_ALLOW_PRIVATE_URLS allows them)",
            refused.ip()
        )));
    }
    Ok(url)
}

/// Whether a URL's host is an IP address that may not be called (names go through
/// [`PublicOnly`]; reqwest does not resolve literal addresses).
pub(crate) fn literal_refused(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    (!is_public(ip)).then_some(ip)
}

/// The worker's resolver when private addresses are not allowed: a name with any non-public
/// address is refused as a whole (as when it was saved).
pub(crate) struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(refused) = addresses.iter().find(|a| !is_public(a.ip())) {
                return Err(
                    format!("{host} resolves to non-public address {}", refused.ip()).into(),
                );
            }
            let addrs: Addrs = Box::new(addresses.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client of the worker.
pub(crate) fn client(allow_private: bool, timeout: std::time::Duration) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .user_agent("loyalty-webhooks/1");
    let builder = if allow_private {
        builder
    } else {
        builder.dns_resolver(Arc::new(PublicOnly))
    };
    match builder.build() {
        Ok(client) => client,
        Err(err) => {
            tracing::warn!(error = %err, "webhook client could not be built; using the default");
            reqwest::Client::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_unicast_addresses_pass() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(refused)), "{refused} must be refused");
        }
        for allowed in [
            "8.8.8.8",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip(allowed)), "{allowed} must pass");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_before_anything_is_called() {
        let refused = |url: &'static str| async move {
            match check_url(url, false).await {
                Err(DomainError::Validation(message)) => message,
                other => panic!("{url}: {other:?}"),
            }
        };
        assert!(refused("ftp://example.com/").await.contains("http"));
        assert!(refused("http://user:pw@example.com/")
            .await
            .contains("credentials"));
        assert!(refused("http://127.0.0.1:9/hook")
            .await
            .contains("127.0.0.1"));
        assert!(refused("http://[::1]/hook").await.contains("::1"));
        assert!(refused("http://localhost/hook")
            .await
            .contains("non-public"));
        assert!(check_url("http://127.0.0.1:9/hook", true).await.is_ok());
        let url = Url::parse("http://169.254.169.254/latest").unwrap();
        assert_eq!(literal_refused(&url), Some(ip("169.254.169.254")));
    }
}
