//! `GET /api/verifications…` and `GET /api/stats`: read-only lookups for support tools and other
//! backends, behind the internal bearer token (the fraud blocks are in `fraud_blocks`).

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::extract::{AppJson, AppPath, AppQuery};
use super::fraud_blocks::FraudBlockView;
use super::problem::Problem;
use super::verifications::{parse_phone, whole_seconds};
use crate::error::Error;
use crate::storage::{MessageRecord, StatsRow, VerificationRecord};

/// The widest stats window: 30 days.
pub const MAX_STATS_HOURS: u32 = 720;
const DEFAULT_STATS_HOURS: u32 = 24;

/// Mounted only when `INTERNAL_API_TOKEN` is set; otherwise the paths are a plain 404.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/verifications", get(verifications_of_number))
        .route("/api/verifications/{verification_id}", get(verification))
        .route("/api/stats", get(stats))
}

/// One verification and the messages sent for it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerificationView {
    pub verification_id: Uuid,
    #[schema(example = "+12125551234")]
    pub phone_number: String,
    /// `pending`, `approved`, `expired`, `max_attempts_reached` or `failed` (its last send failed).
    #[schema(example = "pending")]
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-26T13:30:00Z")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-11-26T13:31:12Z")]
    pub approved_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-26T13:40:00Z")]
    pub expires_at: OffsetDateTime,
    /// Wrong attempts at the current code.
    #[schema(example = 1)]
    pub attempts: u32,
    /// Oldest first.
    pub messages: Vec<MessageView>,
}

/// One message handed to a provider.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    pub message_id: Uuid,
    /// `sms`, `whatsapp` or `call`.
    #[schema(example = "sms")]
    pub channel: String,
    #[schema(example = "twilio-messaging")]
    pub provider: String,
    #[schema(example = "SM00000000000000000000000000000001")]
    pub provider_message_id: Option<String>,
    /// `sending`, `rejected`, `accepted`, `sent`, `delivered`, `undelivered`, `failed` or `read`.
    #[schema(example = "delivered")]
    pub status: String,
    /// The provider's error code, when it gave one.
    #[schema(example = json!(null))]
    pub error_code: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-26T13:30:00Z")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-26T13:30:04Z")]
    pub status_updated_at: OffsetDateTime,
    /// The failed message this one replaced (`CHANNEL_FALLBACK`).
    pub fallback_of: Option<Uuid>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerificationList {
    /// Newest first, within `DATA_RETENTION_HOURS`.
    pub verifications: Vec<VerificationView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NumberQuery {
    /// E.164, URL-encoded (`%2B12125551234`).
    #[param(example = "+12125551234")]
    pub phone_number: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// The window, ending now: 1 to 720 hours (default 24).
    #[param(minimum = 1, maximum = 720, example = 24)]
    pub hours: Option<u32>,
}

/// What was sent to one destination country by one channel, and what became of it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsRowView {
    /// ISO 3166 alpha-2.
    #[schema(example = "BR")]
    pub country: String,
    #[schema(example = "sms")]
    pub channel: String,
    #[serde(flatten)]
    pub counts: StatsCounts,
}

/// Counts of message records; `conversion_rate` is verified ÷ code messages.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct StatsCounts {
    /// Message records, custom messages included.
    #[schema(example = 120)]
    pub messages: u64,
    /// Delivered or read.
    #[schema(example = 101)]
    pub delivered: u64,
    /// Undelivered, or failed after the provider accepted it.
    #[schema(example = 6)]
    pub undelivered: u64,
    /// Refused by the provider outright.
    #[schema(example = 2)]
    pub rejected: u64,
    /// Code messages whose code was approved.
    #[schema(example = 93)]
    pub verified: u64,
    /// Null when no message carried a code.
    #[schema(example = 0.775)]
    pub conversion_rate: Option<f64>,
    /// The rate's denominator; not part of the answer.
    #[serde(skip)]
    code_messages: u64,
}

impl StatsCounts {
    fn add(&mut self, row: &StatsRow) {
        self.messages += row.messages;
        self.code_messages += row.code_messages;
        self.delivered += row.delivered;
        self.undelivered += row.undelivered;
        self.rejected += row.rejected;
        self.verified += row.verified;
        self.conversion_rate =
            (self.code_messages > 0).then(|| self.verified as f64 / self.code_messages as f64);
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsResponse {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-25T13:30:00Z")]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-26T13:30:00Z")]
    pub until: OffsetDateTime,
    /// Sorted by country, then channel.
    pub rows: Vec<StatsRowView>,
    /// Sums over `rows`.
    pub totals: StatsCounts,
    /// Fraud guard blocks that ran within the window, newest first.
    pub blocks: Vec<FraudBlockView>,
}

impl From<VerificationRecord> for VerificationView {
    fn from(r: VerificationRecord) -> Self {
        Self {
            verification_id: r.verification_id,
            phone_number: r.phone_number,
            status: r.status.as_str().to_owned(),
            created_at: whole_seconds(r.created_at),
            approved_at: r.approved_at.map(whole_seconds),
            expires_at: whole_seconds(r.expires_at),
            attempts: r.attempts,
            messages: r.messages.into_iter().map(MessageView::from).collect(),
        }
    }
}

impl From<MessageRecord> for MessageView {
    fn from(m: MessageRecord) -> Self {
        Self {
            message_id: m.message_id,
            channel: m.channel.as_str().to_owned(),
            provider: m.provider,
            provider_message_id: m.provider_message_id,
            status: m.status.as_str().to_owned(),
            error_code: m.error_code,
            created_at: whole_seconds(m.created_at),
            status_updated_at: whole_seconds(m.status_updated_at),
            fallback_of: m.fallback_of,
        }
    }
}

/// Internal: one verification, with its messages.
#[utoipa::path(
    get,
    path = "/api/verifications/{verification_id}",
    tag = "internal",
    params(("verification_id" = Uuid, Path, description = "As in send, resend and verify answers")),
    security(("internal_token" = [])),
    responses(
        (status = 200, description = "The verification", body = VerificationView),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`verification_not_found`; `not_found`: the endpoint is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_request`: not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal_error`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verification(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
) -> Result<AppJson<VerificationView>, Error> {
    let max_attempts = state.verifier.settings().max_verify_attempts;
    let record = state
        .storage
        .verification_record(id, state.verifier.now(), max_attempts)
        .await?
        .ok_or(Error::VerificationNotFound)?;
    Ok(AppJson(record.into()))
}

/// Internal: a number's verifications within `DATA_RETENTION_HOURS`, newest first.
#[utoipa::path(
    get,
    path = "/api/verifications",
    tag = "internal",
    params(NumberQuery),
    security(("internal_token" = [])),
    responses(
        (status = 200, description = "The number's verifications", body = VerificationList),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: the endpoint is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_request`, `invalid_phone_number`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal_error`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verifications_of_number(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<NumberQuery>,
) -> Result<AppJson<VerificationList>, Error> {
    let phone = parse_phone(&query.phone_number)?;
    let now = state.verifier.now();
    // Older rows may still await the purge; the contract promises the retention window only.
    let since = now - state.retention;
    let max_attempts = state.verifier.settings().max_verify_attempts;
    let records = state
        .storage
        .verification_records_of(&phone, since, now, max_attempts)
        .await?;
    Ok(AppJson(VerificationList {
        verifications: records.into_iter().map(VerificationView::from).collect(),
    }))
}

/// Internal: messages sent, delivered and verified per destination country and channel.
#[utoipa::path(
    get,
    path = "/api/stats",
    tag = "internal",
    params(StatsQuery),
    security(("internal_token" = [])),
    responses(
        (status = 200, description = "Counts over the window", body = StatsResponse),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: the endpoint is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_request`: `hours` is not 1 to 720", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal_error`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`storage_unavailable`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stats(
    State(state): State<AppState>,
    AppQuery(query): AppQuery<StatsQuery>,
) -> Result<AppJson<StatsResponse>, Error> {
    let hours = query.hours.unwrap_or(DEFAULT_STATS_HOURS);
    if !(1..=MAX_STATS_HOURS).contains(&hours) {
        return Err(Error::InvalidRequest(format!(
            "`hours` must be 1 to {MAX_STATS_HOURS}."
        )));
    }
    let until = whole_seconds(state.verifier.now());
    let since = until - time::Duration::hours(hours.into());
    let found = state.storage.message_stats(since).await?;
    let blocks = state.storage.fraud_blocks(since, until).await?;
    let mut answer = summarize(since, until, &found);
    answer.blocks = blocks.into_iter().map(FraudBlockView::from).collect();
    Ok(AppJson(answer))
}

/// Rows sorted by country and channel (one per pair, even if storage split one), and their totals.
fn summarize(since: OffsetDateTime, until: OffsetDateTime, found: &[StatsRow]) -> StatsResponse {
    let mut rows: BTreeMap<(&str, &str), StatsCounts> = BTreeMap::new();
    let mut totals = StatsCounts::default();
    for row in found {
        rows.entry((row.country.as_str(), row.channel.as_str()))
            .or_default()
            .add(row);
        totals.add(row);
    }
    StatsResponse {
        since,
        until,
        rows: rows
            .into_iter()
            .map(|((country, channel), counts)| StatsRowView {
                country: country.to_owned(),
                channel: channel.to_owned(),
                counts,
            })
            .collect(),
        totals,
        blocks: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Channel;

    fn row(country: &str, channel: Channel, code_messages: u64, verified: u64) -> StatsRow {
        StatsRow {
            country: country.into(),
            channel,
            messages: code_messages + 1,
            code_messages,
            delivered: 1,
            undelivered: 0,
            rejected: 0,
            verified,
        }
    }

    #[test]
    fn rows_are_sorted_and_totals_sum_them() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let found = [
            row("US", Channel::Sms, 4, 1),
            row("GB", Channel::Whatsapp, 0, 0),
            row("GB", Channel::Sms, 2, 2),
        ];
        let answer = summarize(now, now, &found);
        let keys: Vec<_> = answer
            .rows
            .iter()
            .map(|r| (r.country.as_str(), r.channel.as_str()))
            .collect();
        assert_eq!(keys, [("GB", "sms"), ("GB", "whatsapp"), ("US", "sms")]);
        assert_eq!(answer.rows[0].counts.conversion_rate, Some(1.0));
        assert_eq!(answer.rows[1].counts.conversion_rate, None);
        assert_eq!(answer.totals.messages, 9);
        assert_eq!(answer.totals.verified, 3);
        assert_eq!(answer.totals.conversion_rate, Some(0.5));
    }
}
