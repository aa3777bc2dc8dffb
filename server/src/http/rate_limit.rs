//! Per-IP and per-subject rate limits (GCRA via `governor`), each allowing bursts of twice the
//! per-second rate. Limits are per instance: with N instances behind a balancer a client gets up
//! to N times the rate, which is fine for abuse protection (correctness never depends on them).

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use loyalty_domain::{Actor, Role};

use super::client_addr::ClientAddr;
use super::errors::{graphql_error, RATE_LIMITED};
use super::AppState;

type SubjectKey = (String, Role, String);

pub struct RateLimits {
    ip: DefaultKeyedRateLimiter<IpAddr>,
    subject: DefaultKeyedRateLimiter<SubjectKey>,
    clock: DefaultClock,
}

/// How long the caller should wait before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RateLimits {
    pub fn new(ip_per_sec: u32, subject_per_sec: u32) -> RateLimits {
        RateLimits {
            ip: DefaultKeyedRateLimiter::keyed(quota(ip_per_sec)),
            subject: DefaultKeyedRateLimiter::keyed(quota(subject_per_sec)),
            clock: DefaultClock::default(),
        }
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        self.ip
            .check_key(&ip_key(ip))
            .map_err(|not_until| RetryAfter(not_until.wait_time_from(self.clock.now())))
    }

    /// `cost` is what the request runs (`graphql::price`: each root mutation field, at least
    /// 1 per operation), for HTTP and WebSocket alike.
    pub fn check_subject(&self, actor: &Actor, cost: usize) -> Result<(), RetryAfter> {
        let key = (actor.program.clone(), actor.role, actor.subject.clone());
        let cost =
            NonZeroU32::new(u32::try_from(cost).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        match self.subject.check_key_n(&key, cost) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(RetryAfter(not_until.wait_time_from(self.clock.now()))),
            // More than the burst in one request: it can never pass.
            Err(_) => Err(RetryAfter(Duration::from_secs(1))),
        }
    }

    /// Forgets keys that are back at a full bucket, so memory follows active clients only.
    pub fn sweep(&self) {
        self.ip.retain_recent();
        self.ip.shrink_to_fit();
        self.subject.retain_recent();
        self.subject.shrink_to_fit();
    }
}

fn quota(per_sec: u32) -> Quota {
    let rate = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(per_sec.saturating_mul(2)).unwrap_or(rate);
    Quota::per_second(rate).allow_burst(burst)
}

/// IPv6 clients usually own a whole /64: limit the prefix, not each address in it.
pub(crate) fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// The 429 answer, with `Retry-After` in whole seconds.
pub fn too_many_requests(retry: RetryAfter, message: &str) -> Response {
    let mut response = graphql_error(StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED, message);
    let secs = retry.0.as_secs() + u64::from(retry.0.subsec_nanos() > 0);
    if let Ok(value) = HeaderValue::from_str(&secs.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Middleware: the per-IP limit, keyed by the client's address (see [`ClientAddr`]).
pub async fn per_ip(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let ip = ClientAddr::of(&request);
    match state.limits.check_ip(ip) {
        Ok(()) => next.run(request).await,
        Err(retry) => {
            ::metrics::counter!("http_rate_limited_total", "limit" => "ip").increment(1);
            too_many_requests(retry, "too many requests from this address")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ip_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn burst_is_twice_the_rate_then_refused() {
        let limits = RateLimits::new(5, 3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..10 {
            assert!(limits.check_ip(ip).is_ok());
        }
        let retry = limits.check_ip(ip).unwrap_err();
        assert!(retry.0 > Duration::ZERO && retry.0 <= Duration::from_secs(1));
        // Another address is unaffected.
        assert!(limits.check_ip("10.0.0.2".parse().unwrap()).is_ok());

        let actor = Actor {
            program: "p".into(),
            role: Role::Member,
            subject: "s".into(),
        };
        assert!(limits.check_subject(&actor, 6).is_ok());
        assert!(limits.check_subject(&actor, 1).is_err());
        let other = Actor {
            subject: "t".into(),
            ..actor.clone()
        };
        assert!(limits.check_subject(&other, 1).is_ok());
        // A single request above the burst never passes.
        assert!(limits.check_subject(&other, 100).is_err());
    }
}
