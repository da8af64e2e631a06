//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers and types.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "phone-verify",
        description = "Phone number verification by SMS one-time codes. Every error is \
                       application/problem+json with a stable `code`."
    ),
    paths(
        super::verifications::send_code,
        super::verifications::resend_code,
        super::verifications::verify_code,
        super::internal::send_sms,
        super::lookups::verification,
        super::lookups::verifications_of_number,
        super::lookups::stats,
        super::fraud_blocks::blocks,
        super::fraud_blocks::lift,
        super::webhooks::twilio_status,
        super::webhooks::gateway_status,
        super::health::health,
        super::health::ready,
        super::health::metrics,
        openapi_json,
    ),
    components(schemas(super::problem::Problem, crate::error::ErrorCode)),
    modifiers(&InternalToken),
    tags(
        (name = "verification", description = "Send and check codes"),
        (name = "internal", description = "For other backends, never browsers"),
        (name = "webhooks", description = "Delivery reports from providers, signed"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

struct InternalToken;

impl Modify for InternalToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "internal_token",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
