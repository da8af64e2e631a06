//! A fake of the operator's backend for outgoing events: it checks each delivery's signature the way
//! a receiver would (its own HMAC, not the service's signer), answers from a script, and keeps what
//! it received and what it answered.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::AppOptions;
use crate::receiver_signature::{self, header};

/// The Standard Webhooks Rust library's test secret (not the gateway's: each has its own).
pub const EVENTS_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
pub const EVENTS_PATH: &str = "/events";

/// One delivery as the receiver saw it, and what it answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    /// The signature checked out and the timestamp was within 5 minutes.
    pub signed: bool,
    pub raw: String,
    pub body: Value,
    pub answered: u16,
    /// The answer was held back (`hold_next`): the sender may never have seen it.
    pub held: bool,
}

impl Delivery {
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
}

type Log = Arc<Mutex<Vec<Delivery>>>;

pub struct EventReceiver {
    pub server: MockServer,
    script: Arc<Mutex<VecDeque<(u16, Duration)>>>,
    log: Log,
}

struct Scripted {
    script: Arc<Mutex<VecDeque<(u16, Duration)>>>,
    log: Log,
}

impl Respond for Scripted {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let signed = signature_checks_out(request);
        // A real receiver refuses what it cannot authenticate.
        let (status, delay) = if signed {
            let next = self.script.lock().unwrap().pop_front();
            next.unwrap_or((204, Duration::ZERO))
        } else {
            (401, Duration::ZERO)
        };
        let raw = String::from_utf8_lossy(&request.body).to_string();
        self.log.lock().unwrap().push(Delivery {
            id: header(request, "webhook-id")
                .unwrap_or_default()
                .to_string(),
            signed,
            body: serde_json::from_str(&raw).unwrap_or(Value::Null),
            raw,
            answered: status,
            held: !delay.is_zero(),
        });
        ResponseTemplate::new(status).set_delay(delay)
    }
}

fn signature_checks_out(request: &Request) -> bool {
    receiver_signature::signed_by(request, EVENTS_SECRET)
}

/// A port with nothing listening on it (yet): a receiver that is down.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl EventReceiver {
    pub async fn start() -> Self {
        Self::serve(MockServer::start().await).await
    }

    /// A receiver on `port`, which was down until now.
    pub async fn start_on(port: u16) -> Self {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        Self::serve(MockServer::builder().listener(listener).start().await).await
    }

    async fn serve(server: MockServer) -> Self {
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let log = Log::default();
        Mock::given(method("POST"))
            .and(path(EVENTS_PATH))
            .respond_with(Scripted {
                script: script.clone(),
                log: log.clone(),
            })
            .mount(&server)
            .await;
        Self {
            server,
            script,
            log,
        }
    }

    /// The next answers, in order; after them, 204.
    pub fn answer_next(&self, statuses: impl IntoIterator<Item = u16>) {
        let answers = statuses.into_iter().map(|s| (s, Duration::ZERO));
        self.script.lock().unwrap().extend(answers);
    }

    /// The next delivery gets its 204 only after `delay`: the sender is mid-request meanwhile.
    pub fn hold_next(&self, delay: Duration) {
        self.script.lock().unwrap().push_back((204, delay));
    }

    pub fn url(&self) -> String {
        format!("{}{EVENTS_PATH}", self.server.uri())
    }

    /// Every delivery so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.log.lock().unwrap().clone()
    }

    /// The deliveries it took (2xx), oldest first.
    pub fn taken(&self) -> Vec<Delivery> {
        let mut taken = self.deliveries();
        taken.retain(|d| (200..300).contains(&d.answered) && !d.held);
        taken
    }

    /// Waits (30 s at most) until `done` holds for the deliveries taken so far; returns them.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Delivery]) -> bool) -> Vec<Delivery> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let taken = self.taken();
            if done(&taken) {
                return taken;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within 30 s; received {:#?}",
                self.deliveries()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until an event of `kind` was taken; returns it.
    pub async fn wait_for_kind(&self, kind: &str) -> Delivery {
        let taken = self
            .wait_for(kind, |t| t.iter().any(|d| d.kind() == kind))
            .await;
        taken.into_iter().find(|d| d.kind() == kind).unwrap()
    }
}

/// Options that turn events on, to `url`.
pub fn events_to(url: &str) -> AppOptions<'static> {
    AppOptions::new()
        .var("EVENTS_WEBHOOK_URL", url)
        .var("EVENTS_WEBHOOK_SECRET", EVENTS_SECRET)
}

/// Adds the events variables to other options.
pub fn with_events<'a>(options: AppOptions<'a>, url: &str) -> AppOptions<'a> {
    options
        .var("EVENTS_WEBHOOK_URL", url)
        .var("EVENTS_WEBHOOK_SECRET", EVENTS_SECRET)
}
