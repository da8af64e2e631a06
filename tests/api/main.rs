//! HTTP tests against the real application, each on a fresh database of each backend.

mod helpers;

mod concurrency;
mod health;
mod instances;
mod limits;
mod requests;
mod security;
mod sms_failures;
mod storage;
mod verifications;
