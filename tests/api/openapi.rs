//! `GET /openapi.json` describes every route and every error code, and real answers match it.

use serde_json::Value;

use crate::helpers::{AppOptions, Backend, spawn_app, spawn_app_with};

/// API.md's error table.
const CONTRACT_CODES: [&str; 21] = [
    "malformed_json",
    "unsupported_media_type",
    "payload_too_large",
    "invalid_request",
    "invalid_phone_number",
    "invalid_code_format",
    "channel_not_available",
    "country_not_allowed",
    "invalid_signature",
    "unauthorized",
    "invalid_code",
    "verification_not_found",
    "code_expired",
    "max_attempts_reached",
    "resend_too_soon",
    "too_many_sends",
    "rate_limited",
    "sms_rejected",
    "sms_provider_unavailable",
    "storage_unavailable",
    "internal_error",
];

fn schema_of(doc: &Value, name: &str) -> Value {
    let mut schema = doc["components"]["schemas"][name].clone();
    schema["components"] = doc["components"].clone();
    schema
}

#[track_caller]
fn assert_matches(doc: &Value, name: &str, instance: &Value) {
    let schema = schema_of(doc, name);
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{instance} does not match {name}: {errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_every_route_and_error_code() {
    let (app, _db) = spawn_app(Backend::Sqlite).await;

    let answer = app.get("/openapi.json").await;

    assert_eq!(answer.status, 200);
    let doc = answer.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/auth/phone/send-code", "post"),
        ("/api/auth/phone/resend-code", "post"),
        ("/api/auth/phone/verify", "post"),
        ("/api/sms/send", "post"),
        ("/api/verifications", "get"),
        ("/api/verifications/{verification_id}", "get"),
        ("/api/stats", "get"),
        ("/webhooks/twilio/status", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    let codes: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let descriptions = serde_json::to_string(&doc["paths"]).unwrap();
    for code in CONTRACT_CODES {
        assert!(codes.contains(&code), "{code} is not in ErrorCode");
        assert!(
            descriptions.contains(&format!("`{code}`")),
            "no response documents {code}"
        );
    }
    // Unknown fields are refused, and the document says so.
    for name in ["SendCodeRequest", "VerifyRequest", "SendSmsRequest"] {
        assert_eq!(
            doc["components"]["schemas"][name]["additionalProperties"], false,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_match_the_documented_schemas() {
    let (app, _db) = spawn_app(Backend::Sqlite).await;
    let doc = app.get("/openapi.json").await.body;

    let sent = app.send_code("+12125551234").await;
    assert_matches(&doc, "SendCodeResponse", &sent.body);
    let code = app.last_code_for("+12125551234").await;
    let wrong = app
        .verify("+12125551234", &crate::helpers::wrong_code(&code))
        .await;
    assert_matches(&doc, "Problem", &wrong.body);
    let verified = app.verify("+12125551234", &code).await;
    assert_matches(&doc, "VerifyResponse", &verified.body);
    let too_soon = app.send_code("+12125551234").await;
    assert_eq!(too_soon.code(), "resend_too_soon");
    assert_matches(&doc, "Problem", &too_soon.body);
    assert_matches(&doc, "Status", &app.get("/healthz").await.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_answers_match_the_documented_schemas() {
    const TOKEN: &str = "internal-token-0123456789";
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new().var("INTERNAL_API_TOKEN", TOKEN),
    )
    .await;
    let doc = app.get("/openapi.json").await.body;
    let sent = app.send_code("+12125551234").await;
    let code = app.last_code_for("+12125551234").await;
    app.verify("+12125551234", &code).await;

    let id = sent.body["verification_id"].as_str().unwrap();
    let one = app
        .get_with_token(&format!("/api/verifications/{id}"), Some(TOKEN))
        .await;
    assert_eq!(one.status, 200, "{:?}", one.body);
    assert_matches(&doc, "VerificationView", &one.body);
    let list = app
        .get_with_token(
            "/api/verifications?phone_number=%2B12125551234",
            Some(TOKEN),
        )
        .await;
    assert_matches(&doc, "VerificationList", &list.body);
    let stats = app.get_with_token("/api/stats", Some(TOKEN)).await;
    assert_matches(&doc, "StatsResponse", &stats.body);
}
