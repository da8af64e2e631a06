//! Automatic fallback (`CHANNEL_FALLBACK`): a code message reported undelivered gets a new code by
//! the next channel, once, even when two instances receive the same report several times; never
//! after approval or expiry, and within the hourly cap.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::both_backends;
use crate::callbacks::{message_report, post_signed, with_callbacks};
use crate::channels::{VOICE_FROM, calls, code_in_twiml, send_by};
use crate::gateway::{FakeGateway, accepted, gateway_sign};
use crate::helpers::{AppOptions, Backend, TestApp, TestDatabase, spawn_app_with, spawn_on};
use crate::receiver_signature::unix_now;
use crate::twilio_contract::{CALLS, assert_valid};
use crate::webhook_provider::TOKEN;

/// The sid the fake Twilio gives every message (`helpers::message_created`).
pub(crate) const SID: &str = "SM00000000000000000000000000000001";
const PHONE: &str = "+12125551234";

both_backends!(
    an_undelivered_sms_falls_back_to_a_call_once_through_two_instances,
    no_fallback_after_approval_expiry_or_at_the_hourly_cap,
    a_gateway_report_falls_back_too,
    an_unanswered_call_falls_back_to_an_sms,
);

pub(crate) fn sms_then_call() -> AppOptions<'static> {
    with_callbacks()
        .var("ALLOWED_CHANNELS", "sms,call")
        .var("CHANNEL_FALLBACK", "sms,whatsapp,call")
        .var("TWILIO_VOICE_FROM", VOICE_FROM)
        .var("INTERNAL_API_TOKEN", TOKEN)
}

async fn messages_of(app: &TestApp, verification_id: &Value) -> Vec<Value> {
    crate::webhook_provider::messages_of(app, verification_id).await
}

async fn an_undelivered_sms_falls_back_to_a_call_once_through_two_instances(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let a = spawn_on(&db, sms_then_call()).await;
    let b = spawn_on(&db, sms_then_call().clock(a.clock.clone())).await;
    let sent = send_by(&a, PHONE, "sms", Some("pt-BR")).await;
    let sms_code = a.last_code_for(PHONE).await;

    // Twilio reports it undelivered, to both instances, several times at once.
    let report = message_report(SID, "undelivered");
    let (x, y) = tokio::join!(
        futures_util::future::join_all((0..4).map(|_| post_signed(&a, &report))),
        futures_util::future::join_all((0..4).map(|_| post_signed(&b, &report))),
    );
    assert!(
        x.iter()
            .chain(&y)
            .all(|r| r.status == StatusCode::NO_CONTENT)
    );
    // And once more, late.
    assert_eq!(
        post_signed(&b, &report).await.status,
        StatusCode::NO_CONTENT
    );

    // Exactly one call, by whichever instance won, in the SMS's locale.
    let (on_a, on_b) = (calls(&a).await, calls(&b).await);
    assert_eq!(on_a.len() + on_b.len(), 1, "a: {on_a:?}, b: {on_b:?}");
    let call = on_a.first().or(on_b.first()).unwrap();
    assert_eq!(call["To"], PHONE);
    assert!(
        call["Twiml"].contains("<Say language=\"pt-BR\">"),
        "{}",
        call["Twiml"]
    );
    let winner = if on_a.is_empty() { &b } else { &a };
    let request = winner
        .twilio_requests()
        .await
        .into_iter()
        .find(|r| r.url.path().ends_with("/Calls.json"))
        .unwrap();
    assert_valid(&request, CALLS);

    // The records: the SMS undelivered, the call its fallback.
    let messages = messages_of(&a, &sent["verification_id"]).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    let sms = messages.iter().find(|m| m["channel"] == "sms").unwrap();
    let voice = messages.iter().find(|m| m["channel"] == "call").unwrap();
    assert_eq!(sms["status"], "undelivered");
    assert_eq!(voice["fallback_of"], sms["message_id"]);
    assert!(sms["fallback_of"].is_null());

    // The call's code is the one now; the SMS's never arrived and no longer works.
    let call_code = code_in_twiml(&call["Twiml"]);
    if call_code != sms_code {
        a.verify(PHONE, &sms_code)
            .await
            .assert_problem(400, "invalid_code");
    }
    let answer = a.verify(PHONE, &call_code).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    a.stop().await;
    b.stop().await;
}

async fn no_fallback_after_approval_expiry_or_at_the_hourly_cap(backend: Backend) {
    // Approved: the report comes after the code was used.
    let (app, _db) = spawn_app_with(backend, sms_then_call()).await;
    let code = app.send_and_read_code(PHONE).await;
    assert_eq!(app.verify(PHONE, &code).await.status, StatusCode::OK);
    let report = message_report(SID, "undelivered");
    assert_eq!(
        post_signed(&app, &report).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(calls(&app).await.is_empty());

    // Expired: the report comes after the code's lifetime.
    let (app, _db) = spawn_app_with(backend, sms_then_call()).await;
    app.send_and_read_code(PHONE).await;
    app.clock.advance(Duration::from_secs(601));
    assert_eq!(
        post_signed(&app, &report).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(calls(&app).await.is_empty());

    // The hourly cap holds for fallbacks too.
    let (app, _db) = spawn_app_with(backend, sms_then_call().var("MAX_SENDS_PER_HOUR", 1)).await;
    app.send_and_read_code(PHONE).await;
    assert_eq!(
        post_signed(&app, &report).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(calls(&app).await.is_empty());

    // Delivered, or a channel with nothing after it: nothing to do.
    let (app, _db) = spawn_app_with(backend, sms_then_call()).await;
    app.send_and_read_code(PHONE).await;
    let delivered = message_report(SID, "delivered");
    assert_eq!(
        post_signed(&app, &delivered).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        post_signed(&app, &report).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(calls(&app).await.is_empty());
}

async fn a_gateway_report_falls_back_too(backend: Backend) {
    let gateway = FakeGateway::start().await;
    let (app, _db) = spawn_app_with(
        backend,
        gateway
            .options()
            .var("ALLOWED_CHANNELS", "sms,whatsapp")
            .var("CHANNEL_FALLBACK", "sms,whatsapp")
            .var("INTERNAL_API_TOKEN", TOKEN),
    )
    .await;
    gateway.answer_next([accepted(Some("gw-1")), accepted(Some("gw-2"))]);
    let sent = send_by(&app, PHONE, "sms", None).await;
    let first = gateway.received().await[0].id.clone();

    let report =
        serde_json::json!({"message_id": first, "status": "failed", "error_code": "30008"});
    let body = report.to_string();
    for _ in 0..2 {
        let timestamp = unix_now();
        let answer = app
            .api
            .post(format!("{}/webhooks/sms/status", app.address))
            .header("content-type", "application/json")
            .header("webhook-id", "report-1")
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                gateway_sign("report-1", timestamp, body.as_bytes()),
            )
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    }

    let received = gateway.received().await;
    assert_eq!(received.len(), 2, "one fallback for two reports");
    assert_eq!(received[1].body["channel"], "whatsapp");
    let code = received[1].body["code"].as_str().unwrap();
    let messages = messages_of(&app, &sent["verification_id"]).await;
    let fallback = messages
        .iter()
        .find(|m| m["channel"] == "whatsapp")
        .unwrap();
    assert_eq!(fallback["fallback_of"].as_str(), Some(first.as_str()));
    assert_eq!(app.verify(PHONE, code).await.status, StatusCode::OK);
}

async fn an_unanswered_call_falls_back_to_an_sms(backend: Backend) {
    let (app, _db) =
        spawn_app_with(backend, sms_then_call().var("CHANNEL_FALLBACK", "call,sms")).await;
    send_by(&app, PHONE, "call", None).await;
    assert!(app.sent_messages().await.is_empty());

    // Twilio's call report: nobody picked up.
    let report: Vec<(String, String)> = [
        ("AccountSid", crate::helpers::TWILIO_SID),
        ("CallSid", "CA00000000000000000000000000000001"),
        ("CallStatus", "no-answer"),
        ("From", VOICE_FROM),
        ("To", PHONE),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        post_signed(&app, &report).await.status,
        StatusCode::NO_CONTENT
    );

    let messages = app.sent_messages().await;
    assert_eq!(messages.len(), 1, "one SMS after the unanswered call");
    let code = app.last_code_for(PHONE).await;
    assert_eq!(app.verify(PHONE, &code).await.status, StatusCode::OK);
}
