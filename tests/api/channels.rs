//! Channels and locale: each channel through each provider (request shapes checked against
//! Twilio's OpenAPI extracts, codes read back from what the fakes received and verified), the
//! locale's templates and languages, the autofill lines, and the refusals that cost nothing.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::gateway::FakeGateway;
use crate::helpers::{AppOptions, Backend, TWILIO_FROM, TestApp, spawn_app_with};
use crate::twilio_contract::{CALLS, MESSAGES, VERIFICATIONS, assert_valid};

pub const WHATSAPP_FROM: &str = "+15005550009";
pub const CONTENT_SID: &str = "HX0123456789abcdef0123456789abcdef";
pub const VOICE_FROM: &str = "+15005550010";

both_backends!(
    whatsapp_and_calls_go_out_as_twilio_specifies_and_their_codes_verify,
    twilio_verify_gets_the_channel_its_locale_and_the_app_hash,
    a_bad_channel_or_locale_is_refused_and_costs_nothing,
    console_and_webhook_providers_serve_every_channel,
    every_channel_counts_against_one_cooldown_and_one_hourly_cap,
);

/// Messaging with a WhatsApp sender and a voice number, every channel allowed.
pub fn every_channel() -> AppOptions<'static> {
    AppOptions::new()
        .var("ALLOWED_CHANNELS", "sms,whatsapp,call")
        .var("TWILIO_WHATSAPP_FROM", WHATSAPP_FROM)
        .var("TWILIO_WHATSAPP_CONTENT_SID", CONTENT_SID)
        .var("TWILIO_VOICE_FROM", VOICE_FROM)
}

pub async fn send_by(app: &TestApp, phone: &str, channel: &str, locale: Option<&str>) -> Value {
    let mut body = json!({"phone_number": phone, "channel": channel});
    if let Some(locale) = locale {
        body["locale"] = json!(locale);
    }
    let answer = app.post_json("/api/auth/phone/send-code", &body).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["channel"], channel);
    answer.body
}

fn form(request: &wiremock::Request) -> HashMap<String, String> {
    serde_urlencoded::from_bytes(&request.body).expect("form body")
}

/// The form fields of every call the fake Twilio was asked to make, oldest first.
pub async fn calls(app: &TestApp) -> Vec<HashMap<String, String>> {
    app.twilio_requests()
        .await
        .iter()
        .filter(|r| r.url.path().ends_with("/Calls.json"))
        .map(form)
        .collect()
}

/// The code a call's TwiML reads out: the digits of its first `<Say>`, which says them one by one.
pub fn code_in_twiml(twiml: &str) -> String {
    let say = twiml.split("<Say").nth(1).expect("a <Say>");
    let text = &say[say.find('>').unwrap() + 1..say.find("</Say>").unwrap()];
    text.chars().filter(char::is_ascii_digit).collect()
}

async fn whatsapp_and_calls_go_out_as_twilio_specifies_and_their_codes_verify(backend: Backend) {
    let (app, _db) = spawn_app_with(
        backend,
        every_channel().var("PUBLIC_BASE_URL", "https://verify.example.com"),
    )
    .await;

    // WhatsApp: the approved template, the code as its variable 1.
    send_by(&app, "+5511987654321", "whatsapp", Some("pt-BR")).await;
    let requests = app.twilio_requests().await;
    assert_eq!(requests.len(), 1);
    assert_valid(&requests[0], MESSAGES);
    let message = form(&requests[0]);
    assert_eq!(message["To"], "whatsapp:+5511987654321");
    assert_eq!(message["From"], format!("whatsapp:{WHATSAPP_FROM}"));
    assert_eq!(message["ContentSid"], CONTENT_SID);
    assert!(!message.contains_key("Body"), "{message:?}");
    let variables: Value = serde_json::from_str(&message["ContentVariables"]).unwrap();
    let code = variables["1"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 6);
    let answer = app.verify("+5511987654321", &code).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);

    // A call: TwiML that says the digits one by one, twice, in the locale's language.
    send_by(&app, "+12125551234", "call", Some("pt-BR")).await;
    let calls = calls(&app).await;
    assert_eq!(calls.len(), 1);
    let requests = app.twilio_requests().await;
    assert_valid(requests.last().unwrap(), CALLS);
    assert_eq!(calls[0]["To"], "+12125551234");
    assert_eq!(calls[0]["From"], VOICE_FROM);
    assert_eq!(
        calls[0]["StatusCallback"],
        "https://verify.example.com/webhooks/twilio/status"
    );
    let twiml = &calls[0]["Twiml"];
    assert_eq!(
        twiml.matches("<Say language=\"pt-BR\">").count(),
        2,
        "{twiml}"
    );
    let code = code_in_twiml(twiml);
    let spelled: Vec<String> = code.chars().map(String::from).collect();
    assert!(twiml.contains(&spelled.join(", ")), "{twiml}");
    let answer = app.verify("+12125551234", &code).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);

    // SMS stays as it was.
    let code = app.send_and_read_code("+12125551299").await;
    assert_eq!(
        app.sent_messages().await.last().unwrap()["From"],
        TWILIO_FROM
    );
    assert_eq!(
        app.verify("+12125551299", &code).await.status,
        StatusCode::OK
    );
}

async fn twilio_verify_gets_the_channel_its_locale_and_the_app_hash(backend: Backend) {
    let (app, _db) = spawn_app_with(
        backend,
        AppOptions::new()
            .twilio_verify()
            .var("ALLOWED_CHANNELS", "sms,whatsapp,call")
            .var("ANDROID_APP_HASH", "FA+9qCX9VSu"),
    )
    .await;

    send_by(&app, "+12125551234", "call", Some("pt-br")).await;
    send_by(&app, "+12125551235", "whatsapp", None).await;
    // Klingon is not on Twilio's list: no Locale, and Twilio picks by country.
    send_by(&app, "+12125551236", "sms", Some("tlh")).await;

    let creates: Vec<_> = app
        .twilio_requests()
        .await
        .into_iter()
        .filter(|r| r.url.path().ends_with("/Verifications"))
        .collect();
    assert_eq!(creates.len(), 3);
    for request in &creates {
        assert_valid(request, VERIFICATIONS);
    }
    let forms: Vec<_> = creates.iter().map(form).collect();
    assert_eq!(forms[0]["Channel"], "call");
    assert_eq!(forms[0]["Locale"], "pt-BR");
    assert!(
        !forms[0].contains_key("AppHash"),
        "the hash is for SMS only"
    );
    assert_eq!(forms[1]["Channel"], "whatsapp");
    assert!(!forms[1].contains_key("Locale"));
    assert_eq!(forms[2]["Channel"], "sms");
    assert!(!forms[2].contains_key("Locale"), "{:?}", forms[2]);
    assert_eq!(forms[2]["AppHash"], "FA+9qCX9VSu");

    let code = app.verify_code_for("+12125551234");
    assert_eq!(
        app.verify("+12125551234", &code).await.status,
        StatusCode::OK
    );
}

async fn a_bad_channel_or_locale_is_refused_and_costs_nothing(backend: Backend) {
    let (app, _db) = spawn_app_with(backend, AppOptions::new()).await;
    let phone = "+12125551234";
    let send = |body: Value| {
        let app = &app;
        async move { app.post_json("/api/auth/phone/send-code", &body).await }
    };

    // Only `sms` is allowed by default; an unknown word is the same refusal.
    for channel in ["whatsapp", "call", "pigeon", "SMS", ""] {
        send(json!({"phone_number": phone, "channel": channel}))
            .await
            .assert_problem(422, "channel_not_available");
    }
    send(json!({"phone_number": phone, "channel": 5}))
        .await
        .assert_problem(422, "invalid_request");
    let too_long = format!("en-{}", ["abcdefgh"; 4].join("-"));
    for locale in ["pt_BR", "", "en-", "<script>", too_long.as_str()] {
        send(json!({"phone_number": phone, "locale": locale}))
            .await
            .assert_problem(422, "invalid_request");
    }
    app.post_json(
        "/api/auth/phone/resend-code",
        &json!({"phone_number": phone, "channel": "call"}),
    )
    .await
    .assert_problem(422, "channel_not_available");

    assert!(app.twilio_requests().await.is_empty());
    // Nothing was reserved: no cooldown, no count.
    let answer = send(json!({"phone_number": phone, "channel": "sms", "locale": "en-US"})).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["channel"], "sms");
}

async fn console_and_webhook_providers_serve_every_channel(backend: Backend) {
    let gateway = FakeGateway::start().await;
    let (hook, _db) = spawn_app_with(
        backend,
        gateway
            .options()
            .var("ALLOWED_CHANNELS", "sms,whatsapp,call")
            .var("SMS_TEMPLATE_DE", "Dein Code: {code}"),
    )
    .await;
    for (phone, channel) in [
        ("+4915123456781", "sms"),
        ("+4915123456782", "whatsapp"),
        ("+4915123456783", "call"),
    ] {
        send_by(&hook, phone, channel, Some("de-AT")).await;
        let received = gateway.received().await;
        let last = &received.last().unwrap().body;
        assert_eq!(last["channel"], channel);
        assert_eq!(last["locale"], "de-AT");
        let code = last["code"].as_str().unwrap();
        let body = last["body"].as_str().unwrap();
        assert!(body.starts_with("Dein Code: "), "{body}");
        let digits: String = body.chars().filter(char::is_ascii_digit).collect();
        assert_eq!(digits, code, "{body}");
        if channel == "call" {
            assert!(
                body.contains(", "),
                "a call's text spells the digits: {body}"
            );
        }
        assert_eq!(hook.verify(phone, code).await.status, StatusCode::OK);
    }

    let (console, _db) = spawn_app_with(
        backend,
        AppOptions::new()
            .var("SMS_PROVIDER", "console")
            .var("ALLOWED_CHANNELS", "sms,whatsapp,call"),
    )
    .await;
    for channel in ["sms", "whatsapp", "call"] {
        send_by(&console, "+12125551234", channel, None).await;
        console.clock.advance(std::time::Duration::from_secs(60));
    }
    assert!(console.twilio_requests().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_follow_the_locale_and_sms_ends_with_the_autofill_lines() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new()
            .var("SMS_TEMPLATE", "Code {code}")
            .var("SMS_TEMPLATE_PT_BR", "Seu código {code} vale {minutes} min")
            .var("SMS_TEMPLATE_DE", "Dein Code: {code}")
            .var("CODE_TTL_SECONDS", "300")
            .var("WEBOTP_DOMAIN", "app.example.com")
            .var("ANDROID_APP_HASH", "FA+9qCX9VSu"),
    )
    .await;
    let cases = [
        (
            "+12125551231",
            Some("pt-BR"),
            "Seu código {code} vale 5 min",
        ),
        ("+12125551232", Some("de-AT"), "Dein Code: {code}"),
        ("+12125551233", Some("fr"), "Code {code}"),
        ("+12125551234", None, "Code {code}"),
    ];
    for (phone, locale, first_line) in cases {
        send_by(&app, phone, "sms", locale).await;
        let messages = app.sent_messages().await;
        let body = &messages.last().unwrap()["Body"];
        let lines: Vec<&str> = body.lines().collect();
        let code = lines
            .last()
            .unwrap()
            .strip_prefix("@app.example.com #")
            .expect(body);
        assert_eq!(
            lines,
            [
                first_line.replace("{code}", code).as_str(),
                "FA+9qCX9VSu",
                "",
                &format!("@app.example.com #{code}")
            ],
        );
        assert_eq!(app.verify(phone, code).await.status, StatusCode::OK);
    }
}

async fn every_channel_counts_against_one_cooldown_and_one_hourly_cap(backend: Backend) {
    let (app, _db) = spawn_app_with(backend, every_channel().var("MAX_SENDS_PER_HOUR", 2)).await;
    let phone = "+12125551234";
    let send = |channel: &'static str| {
        let app = &app;
        async move {
            let body = json!({"phone_number": phone, "channel": channel});
            app.post_json("/api/auth/phone/send-code", &body).await
        }
    };

    assert_eq!(send("sms").await.status, StatusCode::OK);
    send("call").await.assert_problem(429, "resend_too_soon");
    app.clock.advance(std::time::Duration::from_secs(31));
    assert_eq!(send("call").await.status, StatusCode::OK);
    app.clock.advance(std::time::Duration::from_secs(31));
    send("whatsapp").await.assert_problem(429, "too_many_sends");
}
