//! `POST /webhooks/twilio/status`: Twilio's delivery reports, signed the way Twilio signs them, and
//! what they change, seen through `/metrics`.

use std::time::Duration;

use phone_verify::signature::twilio::signature;
use reqwest::StatusCode;

use crate::both_backends;
use crate::helpers::{
    Answer, AppOptions, Backend, TWILIO_SID, TWILIO_TOKEN, TestApp, TestDatabase, spawn_app,
    spawn_app_with, spawn_on,
};
use crate::twilio_contract::{MESSAGES, assert_valid};

/// What Twilio is told to call, and so what it signs; the test app is reached on localhost, as a
/// service behind a proxy is.
pub(crate) const PUBLIC_BASE_URL: &str = "https://verify.example.com";
const PATH: &str = "/webhooks/twilio/status";
/// The sid the fake Twilio gives every message (`helpers::message_created`).
const SID: &str = "SM00000000000000000000000000000001";

const DELIVERED: &str =
    r#"sms_message_status_total{provider="twilio-messaging",channel="sms",status="delivered"}"#;
const DELIVERY_COUNT: &str =
    r#"sms_delivery_seconds_count{provider="twilio-messaging",channel="sms"}"#;

/// The recorder is one per process, so tests that read a count from `/metrics` take turns and
/// compare before with after.
static METRICS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

both_backends!(
    an_unsigned_callback_is_refused,
    a_forged_callback_is_refused,
    a_signed_callback_for_an_unknown_message_is_taken_and_ignored,
    the_path_does_not_exist_without_a_public_base_url,
    a_callback_body_may_be_16_kib_and_no_more,
    the_per_ip_request_rate_never_applies_to_callbacks,
    every_message_asks_twilio_for_status_callbacks,
    a_delivered_report_changes_the_message_once,
    a_late_or_conflicting_report_changes_nothing,
    two_instances_count_the_same_report_once,
);

pub(crate) fn with_callbacks() -> AppOptions<'static> {
    AppOptions::new().var("PUBLIC_BASE_URL", PUBLIC_BASE_URL)
}

/// A status callback as Twilio sends one for an SMS.
pub(crate) fn message_report(sid: &str, status: &str) -> Vec<(String, String)> {
    [
        ("AccountSid", TWILIO_SID),
        ("ApiVersion", "2010-04-01"),
        ("From", crate::helpers::TWILIO_FROM),
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("To", "+12125551234"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `X-Twilio-Signature` for these parameters posted to our public URL, under `token`.
pub(crate) fn sign(token: &str, params: &[(String, String)]) -> String {
    signature(
        token.as_bytes(),
        &format!("{PUBLIC_BASE_URL}{PATH}"),
        params,
    )
}

async fn post_callback(
    app: &TestApp,
    params: &[(String, String)],
    signature: Option<&str>,
) -> Answer {
    let mut request = app
        .api
        .post(format!("{}{PATH}", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(params).unwrap());
    if let Some(signature) = signature {
        request = request.header("x-twilio-signature", signature);
    }
    TestApp::answer(request.send().await.expect("request sent")).await
}

/// Posts the parameters signed with the account's auth token, as Twilio would.
pub(crate) async fn post_signed(app: &TestApp, params: &[(String, String)]) -> Answer {
    post_callback(app, params, Some(&sign(TWILIO_TOKEN, params))).await
}

async fn metrics_text(app: &TestApp) -> String {
    let response = app
        .api
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    response.text().await.unwrap()
}

/// A series' value on `/metrics` (0 when absent).
async fn metric(app: &TestApp, series: &str) -> f64 {
    metrics_text(app)
        .await
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or(0.0)
}

async fn an_unsigned_callback_is_refused(backend: Backend) {
    let (app, _db) = spawn_app_with(backend, with_callbacks()).await;

    let answer = post_callback(&app, &message_report(SID, "delivered"), None).await;

    answer.assert_problem(403, "invalid_signature");
}

async fn a_forged_callback_is_refused(backend: Backend) {
    let (app, _db) = spawn_app_with(backend, with_callbacks()).await;
    let report = message_report(SID, "delivered");

    let wrong_token = sign("not-the-auth-token", &report);
    post_callback(&app, &report, Some(&wrong_token))
        .await
        .assert_problem(403, "invalid_signature");

    // Signed, then a parameter changed on the way.
    let signed = sign(TWILIO_TOKEN, &report);
    let mut changed = report.clone();
    for (name, value) in &mut changed {
        if name == "MessageStatus" {
            *value = "failed".into();
        }
    }
    post_callback(&app, &changed, Some(&signed))
        .await
        .assert_problem(403, "invalid_signature");

    // Signed for another URL (the one the proxy forwards to, say).
    let elsewhere = signature(
        TWILIO_TOKEN.as_bytes(),
        &format!("{}{PATH}", app.address),
        &report,
    );
    post_callback(&app, &report, Some(&elsewhere))
        .await
        .assert_problem(403, "invalid_signature");
    post_callback(&app, &report, Some("not base64!"))
        .await
        .assert_problem(403, "invalid_signature");
}

async fn a_signed_callback_for_an_unknown_message_is_taken_and_ignored(backend: Backend) {
    let (app, _db) = spawn_app_with(backend, with_callbacks()).await;

    let answer = post_signed(
        &app,
        &message_report("SM0000000000000000000000000000ffff", "delivered"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{:?}", answer.body);

    let call = [
        ("AccountSid", TWILIO_SID),
        ("CallSid", "CA0000000000000000000000000000ffff"),
        ("CallStatus", "completed"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    assert_eq!(
        post_signed(&app, &call).await.status,
        StatusCode::NO_CONTENT
    );

    // A status we do not track is ignored the same way.
    let inbound = message_report(SID, "receiving");
    assert_eq!(
        post_signed(&app, &inbound).await.status,
        StatusCode::NO_CONTENT
    );
}

async fn the_path_does_not_exist_without_a_public_base_url(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;

    let answer = post_signed(&app, &message_report(SID, "delivered")).await;

    answer.assert_problem(404, "not_found");
}

async fn a_callback_body_may_be_16_kib_and_no_more(backend: Backend) {
    let (app, _db) = spawn_app_with(backend, with_callbacks()).await;
    let padded = |bytes: usize| {
        let mut report = message_report("SM0000000000000000000000000000ffff", "delivered");
        report.push(("Body".into(), "x".repeat(bytes)));
        report
    };

    // Over the API's 4 KiB, within the webhook's own limit.
    let eight_kib = padded(8 * 1024);
    assert_eq!(
        post_signed(&app, &eight_kib).await.status,
        StatusCode::NO_CONTENT
    );

    let too_large = padded(16 * 1024);
    post_signed(&app, &too_large)
        .await
        .assert_problem(413, "payload_too_large");
}

async fn the_per_ip_request_rate_never_applies_to_callbacks(backend: Backend) {
    let (app, _db) = spawn_app_with(
        backend,
        with_callbacks().var("RATE_LIMIT_PER_IP_PER_MINUTE", 2),
    )
    .await;
    let report = message_report("SM0000000000000000000000000000ffff", "delivered");

    let answers = futures_util::future::join_all((0..30).map(|_| post_signed(&app, &report))).await;
    assert!(
        answers.iter().all(|a| a.status == StatusCode::NO_CONTENT),
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    // Forgeries are refused for their signature, however many come.
    let forged =
        futures_util::future::join_all((0..30).map(|_| post_callback(&app, &report, None))).await;
    assert!(forged.iter().all(|a| a.code() == "invalid_signature"));

    // The limit is on, for the API.
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(app.send_code("+12125551234").await.code().to_owned());
    }
    assert!(codes.iter().any(|c| c == "rate_limited"), "{codes:?}");
    assert_eq!(
        post_signed(&app, &report).await.status,
        StatusCode::NO_CONTENT
    );
}

async fn every_message_asks_twilio_for_status_callbacks(backend: Backend) {
    let token = "internal-token-0123456789";
    let (app, _db) =
        spawn_app_with(backend, with_callbacks().var("INTERNAL_API_TOKEN", token)).await;

    app.send_and_read_code("+12125551234").await;
    let custom = app
        .api
        .post(format!("{}/api/sms/send", app.address))
        .bearer_auth(token)
        .json(&serde_json::json!({"phone_number": "+12125550000", "message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(custom.status(), StatusCode::OK);

    let requests = app.twilio_requests().await;
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_valid(request, MESSAGES);
    }
    for message in app.sent_messages().await {
        assert_eq!(
            message["StatusCallback"],
            "https://verify.example.com/webhooks/twilio/status"
        );
    }
}

async fn a_delivered_report_changes_the_message_once(backend: Backend) {
    let _turn = METRICS.lock().await;
    let (app, _db) = spawn_app_with(backend, with_callbacks()).await;
    app.send_and_read_code("+12125551234").await;
    let delivered = metric(&app, DELIVERED).await;
    let count = metric(&app, DELIVERY_COUNT).await;
    let within_10s =
        r#"sms_delivery_seconds_bucket{provider="twilio-messaging",channel="sms",le="10"}"#;
    let within_5s =
        r#"sms_delivery_seconds_bucket{provider="twilio-messaging",channel="sms",le="5"}"#;
    let (before_10s, before_5s) = (
        metric(&app, within_10s).await,
        metric(&app, within_5s).await,
    );
    app.clock.advance(Duration::from_secs(7));

    // A forgery for a real message is refused and changes nothing.
    let report = message_report(SID, "delivered");
    post_callback(&app, &report, Some(&sign("not-the-auth-token", &report)))
        .await
        .assert_problem(403, "invalid_signature");
    assert_eq!(metric(&app, DELIVERED).await, delivered);

    let answer = post_signed(&app, &report).await;

    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{:?}", answer.body);
    assert_eq!(metric(&app, DELIVERED).await, delivered + 1.0);
    // Delivered 7 s after Twilio took it.
    assert_eq!(metric(&app, DELIVERY_COUNT).await, count + 1.0);
    assert_eq!(metric(&app, within_10s).await, before_10s + 1.0);
    assert_eq!(metric(&app, within_5s).await, before_5s);
    let text = metrics_text(&app).await;
    assert!(text.contains(within_5s), "{text}");
}

async fn a_late_or_conflicting_report_changes_nothing(backend: Backend) {
    let _turn = METRICS.lock().await;
    let (app, _db) = spawn_app_with(backend, with_callbacks()).await;
    app.send_and_read_code("+12125551234").await;
    let series = |status: &str| {
        format!(
            r#"sms_message_status_total{{provider="twilio-messaging",channel="sms",status="{status}"}}"#
        )
    };
    let sent = metric(&app, &series("sent")).await;
    let delivered = metric(&app, &series("delivered")).await;
    let undelivered = metric(&app, &series("undelivered")).await;

    for status in ["delivered", "delivered", "sent", "undelivered"] {
        let answer = post_signed(&app, &message_report(SID, status)).await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "{status}");
    }

    assert_eq!(metric(&app, &series("delivered")).await, delivered + 1.0);
    assert_eq!(metric(&app, &series("sent")).await, sent);
    assert_eq!(metric(&app, &series("undelivered")).await, undelivered);
}

async fn two_instances_count_the_same_report_once(backend: Backend) {
    let _turn = METRICS.lock().await;
    let db = TestDatabase::new(backend).await;
    let a = spawn_on(&db, with_callbacks()).await;
    let b = spawn_on(&db, with_callbacks().clock(a.clock.clone())).await;
    a.send_and_read_code("+12125551234").await;
    let delivered = metric(&a, DELIVERED).await;

    let report = message_report(SID, "delivered");
    let (x, y) = tokio::join!(
        futures_util::future::join_all((0..5).map(|_| post_signed(&a, &report))),
        futures_util::future::join_all((0..5).map(|_| post_signed(&b, &report))),
    );

    assert!(
        x.iter()
            .chain(&y)
            .all(|answer| answer.status == StatusCode::NO_CONTENT)
    );
    assert_eq!(metric(&a, DELIVERED).await, delivered + 1.0);
    a.stop().await;
    b.stop().await;
}
