//! Who the client is (its IP), and how many requests per minute it may make.
//!
//! The client IP is the TCP peer. Behind a proxy you run, set `TRUST_PROXY_HEADERS=true` and the
//! IP is taken from `X-Forwarded-For` instead — its last entry, the one your proxy appended, since
//! every entry before it is whatever the client chose to send. Without the setting the header is
//! ignored, so rotating it does not escape any limit. tower-governor's `SmartIpKeyExtractor` trusts
//! the first entry, which is why it is not used here.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Request};
use axum::response::IntoResponse;
use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;

use super::AppState;
use crate::error::Error;
use crate::verification::ip_key;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address, as this service is configured to see it.
pub fn client_ip(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trust_proxy: bool,
) -> Option<IpAddr> {
    if trust_proxy
        && let Some(ip) = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|part| part.trim().parse::<IpAddr>().ok())
            .next_back()
    {
        return Some(ip);
    }
    peer.map(|p| p.ip())
}

/// Extractor for handlers: the client IP, or `None` when the server was started without
/// connection info (never in `startup`, which always provides it).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Ok(ClientIp(client_ip(
            &parts.headers,
            peer,
            state.settings.trust_proxy_headers,
        )))
    }
}

/// tower-governor key: the client IP as above, IPv6 grouped by /64.
#[derive(Debug, Clone, Copy)]
pub struct ClientKeyExtractor {
    pub trust_proxy: bool,
}

impl KeyExtractor for ClientKeyExtractor {
    type Key = String;

    fn extract<T>(&self, req: &Request<T>) -> Result<Self::Key, GovernorError> {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        client_ip(req.headers(), peer, self.trust_proxy)
            .map(ip_key)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

/// Adds the per-IP request-rate limit to `routes`: `per_minute` requests as a burst, refilled evenly
/// over the minute. Over it: our `429 rate_limited` problem with `Retry-After`.
pub fn limit(routes: Router<AppState>, per_minute: u32, trust_proxy: bool) -> Router<AppState> {
    let config = GovernorConfigBuilder::default()
        .key_extractor(ClientKeyExtractor { trust_proxy })
        // `period` is the interval between two replenished tokens, not a rate.
        .period(Duration::from_nanos(
            60_000_000_000 / u64::from(per_minute.max(1)),
        ))
        .burst_size(per_minute.max(1))
        .finish()
        .expect("a positive period and burst");
    let config = Arc::new(config);
    // The limiter keeps one entry per client; drop the idle ones now and then.
    let limiter = config.limiter().clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(60));
        loop {
            ticks.tick().await;
            limiter.retain_recent();
        }
    });
    routes.layer(
        tower_governor::GovernorLayer::new(config).error_handler(|error| match error {
            GovernorError::TooManyRequests { wait_time, .. } => Error::RateLimited {
                retry_after: Duration::from_secs(wait_time.max(1)),
            }
            .into_response(),
            GovernorError::UnableToExtractKey => {
                Error::Internal(anyhow::anyhow!("no client address for rate limiting"))
                    .into_response()
            }
            GovernorError::Other { .. } => {
                Error::Internal(anyhow::anyhow!("rate limiter failed")).into_response()
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_ignored_unless_trusted() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let h = headers("203.0.113.9");
        assert_eq!(client_ip(&h, Some(peer), false), Some(peer.ip()));
        assert_eq!(
            client_ip(&h, Some(peer), true),
            Some("203.0.113.9".parse().unwrap())
        );
    }

    #[test]
    fn the_last_forwarded_entry_is_the_one_our_proxy_added() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let h = headers("1.1.1.1, 2.2.2.2, 198.51.100.4");
        assert_eq!(
            client_ip(&h, Some(peer), true),
            Some("198.51.100.4".parse().unwrap())
        );
        assert_eq!(
            client_ip(&headers("garbage"), Some(peer), true),
            Some(peer.ip())
        );
    }
}
