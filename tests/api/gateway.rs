//! A fake SMS gateway for the webhook provider: it checks each request's signature the way a
//! gateway would (its own HMAC, not the service's signer), answers from a script, and keeps what
//! it received so tests can read the codes back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::AppOptions;
use crate::receiver_signature::{self, header};

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

/// A signature by the gateway's secret, as the gateway would sign its reports.
pub fn gateway_sign(id: &str, timestamp: i64, body: &[u8]) -> String {
    receiver_signature::sign(GATEWAY_SECRET, id, timestamp, body)
}

fn signature_checks_out(request: &Request) -> bool {
    receiver_signature::signed_by(request, GATEWAY_SECRET)
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
