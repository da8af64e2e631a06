//! The dispatcher: a task in each instance that claims due events from the outbox with a lease,
//! POSTs each signed (Standard Webhooks), removes it on a 2xx, and otherwise schedules the next
//! try with exponential backoff and jitter until the event's age runs out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rand::RngExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::body::{body, webhook_id};
use super::settings::EventsWebhook;
use crate::clock::Clock;
use crate::signature::standard_webhooks::{self, WebhookSecret};
use crate::storage::{Storage, StoredEvent};

/// How long one try may take, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claim holds an event: longer than a try, so that an event is retried by another
/// instance only when the one holding it died (or lost its database) mid-delivery.
pub const LEASE: Duration = Duration::from_secs(15);
/// Events claimed (and delivered concurrently) at a time: one batch fits well within the lease.
const BATCH: i64 = 32;
/// How often an idle dispatcher looks for due events (written by any instance).
const POLL: Duration = Duration::from_millis(250);
/// The wait after the database failed a claim.
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// How often the pending gauge is read from the outbox.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);
/// First retry after about a second, doubling, never more than ten minutes apart.
const RETRY_BASE: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
const _: () = assert!(
    REQUEST_TIMEOUT.as_secs() < LEASE.as_secs(),
    "a try must fit in its lease"
);

/// The running dispatcher: stop it, then wait for its batch in flight.
pub struct EventsTask {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl EventsTask {
    /// Stops claiming; a batch in flight goes on.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits up to `timeout` for the batch in flight, then gives up on it: its events' leases
    /// expire and another instance (or the next start) delivers them.
    pub async fn finish(self, timeout: Duration) {
        self.stop();
        let mut handle = self.handle;
        if tokio::time::timeout(timeout, &mut handle).await.is_err() {
            tracing::warn!(
                "event deliveries still running at shutdown were cut off; they will be retried"
            );
            handle.abort();
        }
    }
}

struct Dispatcher {
    storage: Storage,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    url: String,
    secret: WebhookSecret,
    max_age: time::Duration,
    /// This instance's name on the leases it takes.
    owner: Uuid,
}

/// Starts the dispatcher for `webhook`'s receiver.
pub fn spawn(
    storage: Storage,
    clock: Arc<dyn Clock>,
    webhook: &EventsWebhook,
    max_age: Duration,
) -> anyhow::Result<EventsTask> {
    let http = reqwest::Client::builder()
        .connect_timeout(REQUEST_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("phone-verify/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let dispatcher = Dispatcher {
        storage,
        clock,
        http,
        url: webhook.url.clone(),
        secret: webhook.secret.clone(),
        max_age: time::Duration::try_from(max_age)?,
        owner: Uuid::new_v4(),
    };
    let (stop, stopped) = watch::channel(false);
    let handle = tokio::spawn(dispatcher.run(stopped));
    Ok(EventsTask { stop, handle })
}

impl Dispatcher {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let mut gauge_read: Option<Instant> = None;
        while !*stopped.borrow() {
            if gauge_read.is_none_or(|at| at.elapsed() >= GAUGE_INTERVAL) {
                gauge_read = Some(Instant::now());
                match self.storage.pending_events().await {
                    Ok(n) => crate::metrics::events_pending(n),
                    Err(e) => tracing::debug!(error = %e, "could not count the pending events"),
                }
            }
            let now = self.clock.now();
            let claimed = self
                .storage
                .claim_events(now, now + LEASE, self.owner, BATCH)
                .await;
            let pause = match claimed {
                Ok(events) if events.is_empty() => POLL,
                Ok(events) => {
                    join_all(events.iter().map(|e| self.deliver(e))).await;
                    // More may be due already: look again at once.
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim events; trying again");
                    ERROR_PAUSE
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stopped.changed() => {}
            }
        }
    }

    async fn deliver(&self, event: &StoredEvent) {
        let id = webhook_id(event);
        let kind = event.event_type.as_str();
        let failure = match self.post(&id, &body(event)).await {
            Ok(()) => {
                crate::metrics::event_delivered(kind);
                tracing::debug!(webhook_id = %id, event_type = kind, "event delivered");
                // If this fails, the lease runs out and the event goes again: at least once.
                if let Err(e) = self.storage.remove_event(event.seq).await {
                    tracing::warn!(error = %e, webhook_id = %id, "a delivered event could not be removed; it will be sent again");
                }
                return;
            }
            Err(failure) => failure,
        };
        crate::metrics::event_failed(kind);
        let now = self.clock.now();
        let deadline = event.created_at + self.max_age;
        let result = if now >= deadline {
            crate::metrics::event_dropped(kind);
            tracing::warn!(webhook_id = %id, event_type = kind, attempts = event.attempts, reason = %failure, "event dropped: not delivered within EVENTS_MAX_AGE_HOURS");
            self.storage.remove_event(event.seq).await
        } else {
            let next = (now + backoff(event.attempts)).min(deadline);
            if event.attempts == 1 {
                tracing::warn!(webhook_id = %id, event_type = kind, reason = %failure, "event not delivered; retrying with backoff");
            } else {
                tracing::info!(webhook_id = %id, event_type = kind, attempts = event.attempts, reason = %failure, "event not delivered; retrying");
            }
            self.storage.retry_event(event.seq, self.owner, next).await
        };
        // Left as claimed, the event is tried again when its lease ends.
        if let Err(e) = result {
            tracing::warn!(error = %e, webhook_id = %id, "could not reschedule an event");
        }
    }

    /// One try: Ok on a 2xx, else why not.
    async fn post(&self, id: &str, body: &[u8]) -> Result<(), String> {
        let response =
            standard_webhooks::signed_request(self.http.post(&self.url), &self.secret, id, body)
                .send()
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        "the request timed out".to_string()
                    } else if e.is_connect() {
                        "could not connect".to_string()
                    } else {
                        "the request failed".to_string()
                    }
                })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    }
}

/// The wait before the next try after `attempts` tries: 1 s, 2 s, 4 s, … up to 10 minutes, each
/// with ±25 % jitter so that events failed together do not come back together.
fn backoff(attempts: i64) -> time::Duration {
    let doublings = attempts.clamp(1, 32) - 1;
    let ceiling = RETRY_BASE
        .saturating_mul(1 << doublings.min(20))
        .min(MAX_BACKOFF);
    let jittered = ceiling.mul_f64(rand::rng().random_range(0.75..1.25));
    time::Duration::try_from(jittered.min(MAX_BACKOFF)).unwrap_or(time::Duration::SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_retry_is_about_a_second_and_the_wait_doubles_up_to_ten_minutes() {
        for _ in 0..100 {
            let first = backoff(1).as_seconds_f64();
            assert!((0.75..=1.25).contains(&first), "{first}");
            let fourth = backoff(4).as_seconds_f64();
            assert!((6.0..=10.0).contains(&fourth), "{fourth}");
            let tenth = backoff(10).as_seconds_f64();
            assert!((384.0..=600.0).contains(&tenth), "{tenth}");
            for attempts in [11, 30, 1_000] {
                let late = backoff(attempts).as_seconds_f64();
                assert!((450.0..=600.0).contains(&late), "{attempts}: {late}");
            }
        }
    }
}
