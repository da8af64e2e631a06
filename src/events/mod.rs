//! Outgoing events: signed webhooks to the operator's backend (`EVENTS_WEBHOOK_URL`) when a number
//! is verified, a verification runs out of attempts, a message's delivery status changes, or the
//! fraud guard blocks a destination.
//!
//! Storage writes each event with the change it reports (`storage::events`); this module renders
//! and delivers them: `settings` (`EVENTS_*`), `body` (the JSON and the `webhook-id`) and
//! `dispatcher` (the task that claims, sends, retries and drops).

mod body;
mod dispatcher;
mod settings;

pub use body::{body, webhook_id};
pub use dispatcher::{EventsTask, LEASE, spawn};
pub use settings::{EventsSettings, EventsWebhook};
