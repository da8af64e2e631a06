//! phone-verify: verifies phone numbers with SMS one-time codes.

pub mod allocator;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod fraud;
pub mod http;
pub mod metrics;
pub mod signature;
pub mod sms;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod token;
pub mod verification;
