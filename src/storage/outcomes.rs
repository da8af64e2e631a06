//! What callers ask storage for and what it answers, and how a refused statement is explained from
//! the row read back after it.

use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{Channel, PhoneNumber};
use crate::storage::fraud::{FraudBlock, FraudCheck, FraudCounted, FraudScope};

/// Whether a send may start a verification or only renew an existing, unapproved one; or is the
/// automatic fallback for a code message that did not arrive (only while that message is still the
/// verification's current send, and it is pending and unexpired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    Start,
    Resend,
    Fallback { replaces: Uuid },
}

/// A send about to be made: reserve it (and the code) before the SMS goes out, release it if the SMS
/// fails.
#[derive(Debug, Clone)]
pub struct NewSend<'a> {
    pub phone: &'a PhoneNumber,
    pub kind: SendKind,
    /// The code's HMAC; `None` when the SMS provider keeps the code (Twilio Verify).
    pub code_hash: Option<Vec<u8>>,
    pub now: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub cooldown: Duration,
    pub max_sends_per_hour: u32,
    /// The id a brand-new verification gets; a pending one keeps its own.
    pub new_verification_id: Uuid,
    /// Identifies this send, so releasing it cannot undo a later one; also its message's id.
    pub send_id: Uuid,
    pub channel: Channel,
    /// The provider the code goes to; `None` for a test number (nothing is sent, no message record).
    pub provider: Option<&'static str>,
    /// Sends per client IP per hour, across instances (`None`: not counted).
    pub ip_cap: Option<CounterCap>,
    /// Sends per destination country per hour, across instances (`None`: not counted).
    pub country_cap: Option<CounterCap>,
    /// The fraud guard's counts and limits (`None`: not counted: guard off, safe list, test number).
    pub fraud: Option<FraudCheck>,
}

/// Which shared counter a send is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapScope {
    ClientIp,
    Country,
}

impl CapScope {
    pub fn as_str(self) -> &'static str {
        match self {
            CapScope::ClientIp => "ip",
            CapScope::Country => "country",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterCap {
    pub key: String,
    /// At least 1.
    pub max: u32,
}

/// Start of the fixed one-hour window (UTC clock hour) that `now` falls in.
pub fn window_start(now: OffsetDateTime) -> OffsetDateTime {
    now.replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(now)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub verification_id: Uuid,
    pub send_id: Uuid,
    pub sent_at: OffsetDateTime,
    /// The counters this send was counted in (to give back if the SMS fails).
    pub counted: Vec<(CapScope, String)>,
    /// Counters that this send filled up to their cap: it was the last one allowed this window.
    pub filled: Vec<(CapScope, String)>,
    /// Where the fraud guard counted this send (to give back if the SMS fails).
    pub fraud: Option<FraudCounted>,
    /// Monitor mode: the scopes over the limit, and the blocks this send would have made.
    pub fraud_over: Vec<FraudScope>,
    pub fraud_blocks: Vec<FraudBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Reserved(Reservation),
    /// A send within the cooldown.
    TooSoon {
        retry_after: Duration,
    },
    /// `max_sends_per_hour` sends within the last hour.
    HourlyCapReached {
        retry_after: Duration,
    },
    /// A resend with no unapproved verification to renew.
    NotFound,
    /// The client IP's or the country's sends for this hour are used up.
    CapReached {
        scope: CapScope,
        retry_after: Duration,
    },
    /// The fraud guard refused the send: the scope is blocked, by this send (`block`) or before.
    Blocked {
        scope: FraudScope,
        block: Option<FraudBlock>,
    },
}

#[derive(Debug, Clone)]
pub struct CodeCheck<'a> {
    pub phone: &'a PhoneNumber,
    pub code_hash: Vec<u8>,
    pub now: OffsetDateTime,
    pub max_attempts: u32,
    /// Where an approval moves its message from unverified to verified, if the guard counted it.
    pub fraud_keys: FraudKeys,
}

/// The fraud guard's keys of a destination: its prefix and its country.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FraudKeys {
    pub prefix: String,
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    Approved {
        verification_id: Uuid,
        verified_at: OffsetDateTime,
    },
    WrongCode {
        attempts_remaining: u32,
    },
    NotFound,
    Expired,
    MaxAttemptsReached,
}

/// A verify against a provider that keeps the code (Twilio Verify): an attempt is taken first, so
/// parallel checks cannot exceed the limit, then given back if the provider could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Taken {
        verification_id: Uuid,
        attempts_remaining: u32,
    },
    Refused(CheckOutcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The provider approved the code: mark the verification approved (and give the attempt back).
    Approved,
    /// The provider could not answer: the attempt does not count.
    Refund,
    /// The provider locked the verification: no attempts left here either.
    Exhausted,
    /// The provider said the code is wrong, and its attempt was the last: nothing changes (the
    /// attempt counted when taken), but the verification is now locked, which is an event.
    LastWrong,
}

/// What a failed reservation or check read back, to say why it failed.
#[derive(Debug, Clone)]
pub(super) struct RowState {
    pub status: String,
    pub has_code: bool,
    pub attempts: u32,
    pub expires_at: OffsetDateTime,
    pub send_times: Vec<OffsetDateTime>,
}

pub(super) const HOUR: Duration = Duration::from_secs(3_600);

/// How often a reservation or check whose statement was refused, but whose row no longer explains
/// why, is tried again before giving up.
pub(super) const RETRIES: usize = 3;

/// Why a reservation did not go through, judged from the row as it is now. `None` means the row no
/// longer blocks the send (it changed in between): the caller tries again.
pub(super) fn classify_refused_send(
    send: &NewSend<'_>,
    row: Option<&RowState>,
) -> Option<SendOutcome> {
    if let SendKind::Fallback { .. } = send.kind {
        // The cap, or else the verification moved on (approved, expired, or a newer send).
        return Some(
            row.and_then(|r| hourly_cap(send, r))
                .unwrap_or(SendOutcome::NotFound),
        );
    }
    if send.kind == SendKind::Resend && row.is_none_or(|r| r.status == "approved") {
        return Some(SendOutcome::NotFound);
    }
    let row = row?;
    let now = send.now;
    if let Some(last) = row.send_times.iter().max()
        && *last > now - send.cooldown
    {
        return Some(SendOutcome::TooSoon {
            retry_after: ceil_secs(*last + send.cooldown - now),
        });
    }
    hourly_cap(send, row)
}

/// The hourly cap's refusal, if the row is at it.
fn hourly_cap(send: &NewSend<'_>, row: &RowState) -> Option<SendOutcome> {
    let now = send.now;
    let mut in_window: Vec<_> = row
        .send_times
        .iter()
        .filter(|t| **t > now - HOUR)
        .copied()
        .collect();
    if in_window.len() >= send.max_sends_per_hour as usize {
        in_window.sort();
        // The cap lifts when enough of the oldest sends leave the window.
        let freeing = in_window[in_window.len() - send.max_sends_per_hour as usize];
        return Some(SendOutcome::HourlyCapReached {
            retry_after: ceil_secs(freeing + HOUR - now),
        });
    }
    None
}

/// Why a check did not go through. `None`: the row changed in between, try again. `local_code`
/// says whether the check expected our own code hash (true) or a provider-kept code (false).
pub(super) fn classify_refused_check(
    now: OffsetDateTime,
    max_attempts: u32,
    local_code: bool,
    row: Option<&RowState>,
) -> Option<CheckOutcome> {
    let Some(row) = row else {
        return Some(CheckOutcome::NotFound);
    };
    if row.status != "pending" || row.has_code != local_code {
        return Some(CheckOutcome::NotFound);
    }
    if row.expires_at <= now {
        return Some(CheckOutcome::Expired);
    }
    if row.attempts >= max_attempts {
        return Some(CheckOutcome::MaxAttemptsReached);
    }
    None
}

/// Seconds until the window that `now` falls in ends.
pub(super) fn until_next_window(now: OffsetDateTime) -> Duration {
    ceil_secs(window_start(now) + HOUR - now)
}

/// Whole seconds, rounded up, at least one: a client that waits `retry_after` must not be refused.
fn ceil_secs(d: time::Duration) -> Duration {
    let ms = d.whole_milliseconds().max(0) as u64;
    Duration::from_secs(ms.div_ceil(1_000).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(
            ceil_secs(time::Duration::milliseconds(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            ceil_secs(time::Duration::milliseconds(27_001)),
            Duration::from_secs(28)
        );
        assert_eq!(
            ceil_secs(time::Duration::seconds(27)),
            Duration::from_secs(27)
        );
        assert_eq!(
            ceil_secs(time::Duration::seconds(-3)),
            Duration::from_secs(1)
        );
    }
}
