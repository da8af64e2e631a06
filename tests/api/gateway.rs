//! A fake SMS gateway for the webhook provider: it checks each request's signature the way a
//! gateway would (its own HMAC, not the service's signer), answers from a script, and keeps what
//! it received so tests can read the codes back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::AppOptions;

/// The Standard Webhooks Python library's test secret.
pub const GATEWAY_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const GATEWAY_PATH: &str = "/sms";

/// One request as the gateway saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    /// The signature checked out, and the timestamp was within 5 minutes.
    pub signed: bool,
    pub body: Value,
}

pub struct FakeGateway {
    pub server: MockServer,
    script: Arc<Mutex<VecDeque<ResponseTemplate>>>,
}

struct Scripted(Arc<Mutex<VecDeque<ResponseTemplate>>>);

impl Respond for Scripted {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        // A real gateway refuses what it cannot authenticate.
        if !signature_checks_out(request) {
            return ResponseTemplate::new(401).set_body_json(json!({"error": "bad signature"}));
        }
        self.0
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| accepted(Some("gw-1")))
    }
}

/// A 2xx answer, with or without the gateway's id for the message.
pub fn accepted(provider_message_id: Option<&str>) -> ResponseTemplate {
    match provider_message_id {
        Some(id) => ResponseTemplate::new(202).set_body_json(json!({"provider_message_id": id})),
        None => ResponseTemplate::new(200),
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `v1,` + base64(HMAC-SHA256(key, id.timestamp.body)), the key being the secret's base64 part
/// decoded: written from the spec, independently of `phone_verify::signature`.
pub fn gateway_sign(id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = STANDARD
        .decode(GATEWAY_SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn header<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

fn signature_checks_out(request: &Request) -> bool {
    let (Some(id), Some(timestamp), Some(signature)) = (
        header(request, "webhook-id"),
        header(request, "webhook-timestamp").and_then(|t| t.parse::<i64>().ok()),
        header(request, "webhook-signature"),
    ) else {
        return false;
    };
    let expected = gateway_sign(id, timestamp, &request.body);
    (unix_now() - timestamp).abs() <= 300 && signature.split(' ').any(|s| s == expected)
}

impl FakeGateway {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let script = Arc::new(Mutex::new(VecDeque::new()));
        Mock::given(method("POST"))
            .and(path(GATEWAY_PATH))
            .respond_with(Scripted(script.clone()))
            .mount(&server)
            .await;
        Self { server, script }
    }

    /// The next answers, in order; after them, 202 with `provider_message_id` `gw-1`.
    pub fn answer_next(&self, answers: impl IntoIterator<Item = ResponseTemplate>) {
        self.script.lock().unwrap().extend(answers);
    }

    /// Options that make the webhook the only provider, pointed here.
    pub fn options(&self) -> AppOptions<'static> {
        AppOptions::new()
            .var("SMS_PROVIDER", "webhook")
            .var(
                "SMS_WEBHOOK_URL",
                format!("{}{GATEWAY_PATH}", self.server.uri()),
            )
            .var("SMS_WEBHOOK_SECRET", GATEWAY_SECRET)
    }

    pub async fn received(&self) -> Vec<Received> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| Received {
                id: header(r, "webhook-id").unwrap_or_default().to_string(),
                signed: signature_checks_out(r),
                body: serde_json::from_slice(&r.body).expect("the payload is JSON"),
            })
            .collect()
    }

    /// The code of the last request for this number.
    pub async fn last_code_for(&self, e164: &str) -> String {
        let received = self.received().await;
        let last = received
            .iter()
            .rev()
            .find(|r| r.body["to"] == e164)
            .unwrap_or_else(|| panic!("the gateway got nothing for {e164}"));
        last.body["code"].as_str().expect("a code").to_string()
    }
}
