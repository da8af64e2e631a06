//! Everything the service logs during a full run — every provider, the error paths, the internal
//! endpoint, tokens — captured and searched for what must never be there: secrets, codes, tokens,
//! full phone numbers. Its own test binary, because the log subscriber is process-wide.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

#[path = "api/gateway.rs"]
#[allow(dead_code)]
mod gateway;

#[path = "api/event_receiver.rs"]
#[allow(dead_code)]
mod event_receiver;

#[path = "api/receiver_signature.rs"]
#[allow(dead_code)]
mod receiver_signature;

use std::io::Write;
use std::sync::{Arc, Mutex};

use helpers::{AppOptions, Backend, TWILIO_TOKEN, spawn_app_with, wrong_code};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const HASH_SECRET: &str = "test-code-hash-secret-0123456789abcdef";
const TOKEN_SECRET: &str = "verification-token-secret-0123456789";
const INTERNAL_TOKEN: &str = "internal-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_no_secret_code_token_or_full_number() {
    let capture = Capture::default();
    // Debug level, so even detailed events are searched.
    phone_verify::telemetry::init_with_filter(
        phone_verify::telemetry::LogFormat::Json,
        tracing_subscriber::EnvFilter::new("debug,hyper=info,h2=info,wiremock=info"),
        capture.clone(),
    );

    let mut secrets_in_answers: Vec<String> = Vec::new();
    let common = || {
        AppOptions::new()
            .var("VERIFICATION_TOKEN_SECRET", TOKEN_SECRET)
            .var("INTERNAL_API_TOKEN", INTERNAL_TOKEN)
            .var("MAX_SENDS_PER_COUNTRY_PER_HOUR", 3)
            .var("TEST_PHONE_NUMBERS", "+15005550006=424242")
    };

    // Messaging: send, wrong code, right code (with a JWT), resend too soon, bad number.
    let (app, _db) = spawn_app_with(Backend::Sqlite, common()).await;
    let code = app.send_and_read_code("+12125551234").await;
    secrets_in_answers.push(code.clone());
    app.verify("+12125551234", &wrong_code(&code)).await;
    let verified = app.verify("+12125551234", &code).await;
    secrets_in_answers.push(verified.body["token"].as_str().unwrap().to_string());
    app.send_code("+12125551234").await;
    app.send_code("+1 212 555 1234 ext 9").await;
    // The country cap: three more US numbers fill it, the fourth is refused (one WARN in all).
    for n in ["+12125551235", "+12125551236", "+12125551237"] {
        let answer = app.send_code(n).await;
        if answer.status == 200 {
            secrets_in_answers.push(app.last_code_for(n).await);
        }
    }
    // Test number, internal endpoint.
    app.send_code("+15005550006").await;
    app.verify("+15005550006", "424242").await;
    app.api
        .post(format!("{}/api/sms/send", app.address))
        .bearer_auth(INTERNAL_TOKEN)
        .json(&json!({"phone_number": "+33612345678", "message": "Your parcel is here"}))
        .send()
        .await
        .unwrap();
    // Provider failures: an outage and a credentials error (which logs a hint at ERROR).
    for response in [
        ResponseTemplate::new(500),
        ResponseTemplate::new(401)
            .set_body_json(json!({"code": 20003, "message": "Authenticate", "status": 401})),
    ] {
        app.twilio.reset().await;
        Mock::given(method("POST"))
            .respond_with(response)
            .mount(&app.twilio)
            .await;
        app.send_code("+442071234567").await;
        for request in app.twilio_requests().await {
            let form: std::collections::HashMap<String, String> =
                serde_urlencoded::from_bytes(&request.body).unwrap();
            if let Some(body) = form.get("Body") {
                secrets_in_answers.push(body.chars().filter(char::is_ascii_digit).collect());
            }
        }
    }

    // Twilio Verify: send, wrong code, right code.
    let (verify_app, _db2) = spawn_app_with(Backend::Sqlite, common().twilio_verify()).await;
    verify_app.send_code("+33612345679").await;
    let code = verify_app.verify_code_for("+33612345679");
    secrets_in_answers.push(code.clone());
    verify_app.verify("+33612345679", &wrong_code(&code)).await;
    let verified = verify_app.verify("+33612345679", &code).await;
    assert_eq!(verified.status, 200);
    secrets_in_answers.push(verified.body["token"].as_str().unwrap().to_string());

    // The webhook provider, failing over from a Twilio outage, with events on: neither secret shows.
    let gateway = gateway::FakeGateway::start().await;
    let receiver = event_receiver::EventReceiver::start().await;
    let options = gateway
        .options()
        .var("SMS_PROVIDER", "twilio-messaging,webhook")
        .var("TWILIO_API_BASE_URL", "http://127.0.0.1:9")
        .var("EVENTS_WEBHOOK_URL", receiver.url())
        .var("EVENTS_WEBHOOK_SECRET", event_receiver::EVENTS_SECRET);
    let (hook_app, _db3) = spawn_app_with(Backend::Sqlite, options).await;
    assert_eq!(hook_app.send_code("+33612345678").await.status, 200);
    let code = gateway.last_code_for("+33612345678").await;
    assert_eq!(hook_app.verify("+33612345678", &code).await.status, 200);
    secrets_in_answers.push(code);
    receiver.wait_for_kind("verification.approved").await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let webhook_key = gateway::GATEWAY_SECRET.trim_start_matches("whsec_");
    assert!(
        !logs.contains(webhook_key),
        "the webhook secret is in the logs"
    );
    let events_key = event_receiver::EVENTS_SECRET.trim_start_matches("whsec_");
    assert!(
        !logs.contains(events_key),
        "the events secret is in the logs"
    );
    assert!(
        logs.lines().count() > 30,
        "too little was logged to prove anything:\n{logs}"
    );
    for secret in [TWILIO_TOKEN, HASH_SECRET, TOKEN_SECRET, INTERNAL_TOKEN] {
        assert!(!logs.contains(secret), "a secret is in the logs");
    }
    for value in &secrets_in_answers {
        assert!(value.len() >= 6);
        assert!(
            !logs.contains(value.as_str()),
            "{value} (a code or token) is in the logs"
        );
    }
    for number in [
        "2125551234",
        "2125551235",
        "2125551236",
        "2125551237",
        "5005550006",
        "33612345678",
        "33612345679",
        "442071234567",
    ] {
        assert!(
            !logs.contains(number),
            "a full phone number ({number}) is in the logs"
        );
    }
    assert!(logs.contains("+*******1234"), "numbers are logged masked");
    let cap_warnings = logs
        .lines()
        .filter(|l| l.contains("hourly send cap for this country reached"))
        .count();
    assert_eq!(
        cap_warnings, 1,
        "the country cap warns once per country per hour"
    );
    assert!(
        logs.contains("TWILIO_AUTH_TOKEN"),
        "the 20003 hint names what to fix"
    );
    // What happens for a request, even in the tasks it spawns, is logged with its request id.
    let flow_lines: Vec<&str> = logs
        .lines()
        .filter(|l| {
            // The flow's modules (`verification::send`, `verification::check`) and the providers.
            l.contains(r#""target":"phone_verify::verification"#)
                || l.contains(r#""target":"phone_verify::sms::"#)
        })
        .collect();
    assert!(flow_lines.len() >= 10, "{} flow lines", flow_lines.len());
    for line in flow_lines {
        assert!(line.contains(r#""request_id":"#), "no request id: {line}");
    }
}
