//! HTTP tests against the real application, each on a fresh database of each backend.

mod helpers;

mod abuse;
mod callbacks;
mod channels;
mod concurrency;
mod event_receiver;
mod events;
mod failover;
mod fallback;
mod fraud;
mod gateway;
mod gateway_status;
mod health;
mod instances;
mod internal;
mod limits;
mod lookups;
mod openapi;
mod receiver_signature;
mod requests;
mod security;
mod sms_failures;
mod storage;
mod test_numbers;
mod tidy;
mod twilio_contract;
mod twilio_messaging;
mod twilio_verify;
mod verifications;
mod webhook_provider;
