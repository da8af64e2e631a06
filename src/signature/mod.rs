//! Webhook signatures: checking the ones we receive and making the ones we send.

/// Standard Webhooks: HMAC-SHA256 over id, timestamp and body, with a replay window.
pub mod standard_webhooks;
/// Twilio's `X-Twilio-Signature`: HMAC-SHA1 over the URL and the sorted POST parameters.
pub mod twilio;
