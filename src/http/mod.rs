//! The HTTP surface: routes, shared state, and the layers every request passes through.

pub mod extract;
pub mod fraud_blocks;
pub mod health;
pub mod internal;
pub mod lookups;
pub mod openapi;
pub mod problem;
pub mod rate_limit;
mod settings;
pub mod verifications;
pub mod webhooks;

pub use settings::HttpSettings;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::http::{HeaderName, HeaderValue, Request, header};
use axum::response::IntoResponse;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::error::Error;
use crate::signature::standard_webhooks::WebhookSecret;
use crate::sms::Failover;
use crate::storage::Storage;
use crate::token::TokenSigner;
use crate::verification::Verifier;

/// Cloned for every request by axum, so every field is behind an `Arc` (or is a small `Copy`): the
/// verifier's settings (test numbers, templates) and the keys would otherwise be copied onto the heap
/// per request.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<HttpSettings>,
    /// Shared handles inside (pool and gate), so a clone copies no heap data either.
    pub storage: Storage,
    pub verifier: Arc<Verifier>,
    /// Signs verify answers when `VERIFICATION_TOKEN_SECRET` is set.
    pub tokens: Option<Arc<TokenSigner>>,
    /// Senders for free-text messages (`POST /api/sms/send`), in failover order.
    pub messages: Option<Failover>,
    /// `DATA_RETENTION_HOURS`: how far back the by-number lookup reaches.
    pub retention: std::time::Duration,
    /// Checks Twilio's status callbacks; set with `PUBLIC_BASE_URL` and Twilio credentials.
    pub twilio_webhook: Option<Arc<webhooks::TwilioWebhook>>,
    /// Checks our gateway's status reports; set when the webhook is one of the providers.
    pub sms_webhook: Option<Arc<WebhookSecret>>,
}

/// The largest request body the API accepts.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    /// The current request's id, for the `instance` of problem bodies.
    pub static CURRENT_REQUEST_ID: String;
}

async fn scope_request_id(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    CURRENT_REQUEST_ID.scope(id, next.run(request)).await
}

/// Browsers may call from the configured origins only; with none configured, no CORS headers are
/// sent and browsers block cross-origin calls.
fn cors(settings: &HttpSettings) -> CorsLayer {
    let origins: Vec<HeaderValue> = settings
        .cors_allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, REQUEST_ID])
        .expose_headers([header::RETRY_AFTER, REQUEST_ID])
        .max_age(std::time::Duration::from_secs(3600))
}

/// Every wait below is bounded (database acquire and statement timeouts, Twilio timeouts), so a
/// request still running after this long is a bug; it is cut off rather than held open.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn time_limit(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Error::Internal(anyhow::anyhow!(
            "request still running after {} s",
            REQUEST_TIMEOUT.as_secs()
        ))
        .into_response(),
    }
}

pub fn router(state: AppState) -> Router {
    let cors = cors(&state.settings);
    // Verification answers must never be cached by a browser or a proxy.
    let mut api = verifications::router();
    if state.settings.internal_api_token.is_some() {
        let internal = internal::router()
            .merge(lookups::router())
            .merge(fraud_blocks::router())
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                internal::require_token,
            ));
        api = api.merge(internal);
    }
    if state.settings.rate_limit_per_ip_per_minute > 0 {
        api = rate_limit::limit(
            api,
            state.settings.rate_limit_per_ip_per_minute,
            state.settings.trust_proxy_headers,
        );
    }
    let api = api.layer(SetResponseHeaderLayer::overriding(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    ));

    // Beside the API, not in it: outside the per-IP rate, with its own body limit.
    let mut app = Router::new().merge(api);
    if state.twilio_webhook.is_some() {
        app = app.merge(webhooks::router());
    }
    if state.sms_webhook.is_some() {
        app = app.merge(webhooks::gateway_router());
    }
    app.merge(health::router())
        .merge(openapi::router())
        .fallback(|| async { Error::RouteNotFound })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .route_layer(axum::middleware::from_fn(crate::metrics::track_requests))
        .layer(axum::middleware::from_fn(time_limit))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let request_id = request
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    // The path only: query strings and bodies may carry phone numbers.
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id,
                    )
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(cors)
        .layer(axum::middleware::from_fn(scope_request_id))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}
