//! The fraud_scope table: the fraud guard's counts of unverified and verified code messages per
//! destination prefix and per country over a rolling window, and the blocks. One row per scope,
//! updated under its row lock by the send statement itself, so concurrent sends and instances see
//! each other's counts; an approval moves its message from unverified to verified: on Postgres by
//! leaving a `fraud_conversion` row that the scope's next send moves in, so that only sends take
//! turns on a scope's row; on SQLite (one writer) and for Twilio Verify's approvals, directly.
//!
//! The window is a ring of `RING_SLOTS` time slots in each row: position `slot % RING_SLOTS + 1`
//! holds slot number `slot` and its counts; a slot leaves the window when its position is reused
//! or when it is older than the newest `RING_SLOTS` slots.

use sqlx::SqliteConnection;
use time::OffsetDateTime;

mod postgres;
mod sqlite;

pub(super) use postgres::{PG_CHECK_FRAUD, PG_FRAUD_COLUMNS, pg_fraud};
pub(super) use sqlite::count_sqlite;

use super::db::{self, Db, Param, Row, Sql};
use super::tx::Tx;
use super::{Storage, StorageError};

/// Slots per window: a message leaves the counts within 1/60 of the window of its end.
pub const RING_SLOTS: i64 = 60;

/// Where a send's fraud guard stands: what to count it under and the limits.
#[derive(Debug, Clone)]
pub struct FraudCheck {
    /// Refuse over the limit (else only count and record the blocks: monitor mode).
    pub enforce: bool,
    pub prefix: String,
    pub country: String,
    /// The current slot number (Unix time over the slot's length).
    pub slot: i64,
    pub min_per_prefix: u32,
    pub min_per_country: u32,
    pub ratio: f64,
    /// The end of a block made now.
    pub block_until: OffsetDateTime,
}

impl FraudCheck {
    /// The slot's position in the ring, from 1 (Postgres arrays).
    pub(super) fn position(&self) -> i32 {
        position(self.slot)
    }

    pub(super) fn oldest_slot(&self) -> i64 {
        self.slot - RING_SLOTS + 1
    }

    /// The binds the Postgres send statement takes from $18 on (see `pg_fraud()`).
    pub(super) fn mode(check: Option<&FraudCheck>) -> i32 {
        match check {
            None => 0,
            Some(c) if c.enforce => 2,
            Some(_) => 1,
        }
    }
}

fn position(slot: i64) -> i32 {
    (slot.rem_euclid(RING_SLOTS) + 1) as i32
}

/// The two scopes a destination is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FraudScope {
    Prefix,
    Country,
}

impl FraudScope {
    pub fn as_str(self) -> &'static str {
        match self {
            FraudScope::Prefix => "prefix",
            FraudScope::Country => "country",
        }
    }

    fn parse(s: &str) -> Result<Self, StorageError> {
        match s {
            "prefix" => Ok(FraudScope::Prefix),
            "country" => Ok(FraudScope::Country),
            other => Err(StorageError::Setup(format!("unknown fraud scope {other}"))),
        }
    }
}

/// A block: the scope and key, when it started and ends, and the counts that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FraudBlock {
    pub scope: FraudScope,
    pub key: String,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    pub unverified: i64,
    pub verified: i64,
}

/// The keys a send was counted under and its slot: what an approval or a failed send changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FraudCounted {
    pub prefix: String,
    pub country: String,
    pub slot: i64,
}

/// What the guard said about one scope of a send: bits of the row's `outcome`, and the counts of
/// the block when the send made one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ScopeOutcome {
    bits: i64,
    block_unverified: i64,
    block_verified: i64,
}

impl ScopeOutcome {
    pub(super) fn read(row: &Row, first: usize) -> Result<Option<Self>, StorageError> {
        let Some(bits) = row.opt_int(first)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            bits,
            block_unverified: row.opt_int(first + 1)?.unwrap_or(0),
            block_verified: row.opt_int(first + 2)?.unwrap_or(0),
        }))
    }

    pub(super) fn counted(self) -> bool {
        self.bits & 1 != 0
    }

    /// This send blocked the scope.
    pub(super) fn made_a_block(self) -> bool {
        self.bits & 2 != 0
    }

    /// Over the limit or blocked: refused in enforce mode, would have been in monitor mode.
    pub(super) fn over(self) -> bool {
        self.bits & 4 != 0
    }

    /// The block this send made, if it made one.
    pub(super) fn made_block(
        self,
        scope: FraudScope,
        key: &str,
        check: &FraudCheck,
        now: OffsetDateTime,
    ) -> Option<FraudBlock> {
        self.made_a_block().then(|| FraudBlock {
            scope,
            key: key.to_string(),
            since: now,
            until: check.block_until,
            unverified: self.block_unverified,
            verified: self.block_verified,
        })
    }
}

// Moves counts in one slot of one scope, if the ring still holds that slot: a failed send's
// message leaves U ($5 = -1), an approved one moves from U to V ($5 = -1, $6 = 1). $4 is the
// slot's position (from 1), $8 the ring size: the totals change only while the slot is live for
// them. The SET expressions all read the row as it was.
const ADJUST: Sql = Sql::each(
    r#"
update fraud_scope set
    unverified = unverified[1:($4 - 1)] || greatest(unverified[$4] + $5, 0) || unverified[($4 + 1):],
    verified = verified[1:($4 - 1)] || greatest(verified[$4] + $6, 0) || verified[($4 + 1):],
    unverified_total = unverified_total + case when $3 > newest_slot - $8
        then greatest(unverified[$4] + $5, 0) - unverified[$4] else 0 end,
    verified_total = verified_total + case when $3 > newest_slot - $8
        then greatest(verified[$4] + $6, 0) - verified[$4] else 0 end,
    updated_at = $7
where scope = $1 and key = $2 and slots[$4] = $3
"#,
    r#"
update fraud_scope set
    unverified = json_set(unverified, '$[' || ($4 - 1) || ']',
        max(json_extract(unverified, '$[' || ($4 - 1) || ']') + $5, 0)),
    verified = json_set(verified, '$[' || ($4 - 1) || ']',
        max(json_extract(verified, '$[' || ($4 - 1) || ']') + $6, 0)),
    unverified_total = unverified_total + case when $3 > newest_slot - $8
        then max(json_extract(unverified, '$[' || ($4 - 1) || ']') + $5, 0)
             - json_extract(unverified, '$[' || ($4 - 1) || ']') else 0 end,
    verified_total = verified_total + case when $3 > newest_slot - $8
        then max(json_extract(verified, '$[' || ($4 - 1) || ']') + $6, 0)
             - json_extract(verified, '$[' || ($4 - 1) || ']') else 0 end,
    updated_at = $7
where scope = $1 and key = $2 and json_extract(slots, '$[' || ($4 - 1) || ']') = $3
"#,
);

// Lifting ends the block now and forgives the unverified messages counted so far.
const LIFT: Sql = Sql::each(
    r#"
update fraud_scope set blocked_until = $3, unverified = array_fill(0, array[cardinality(unverified)]),
    unverified_total = 0, updated_at = $3
where scope = $1 and key = $2 and blocked_until > $3
"#,
    r#"
update fraud_scope set blocked_until = $3,
    unverified = (select json_group_array(0) from json_each(fraud_scope.unverified)),
    unverified_total = 0, updated_at = $3
where scope = $1 and key = $2 and blocked_until > $3
"#,
);

// Blocks that end after $1 (active ones when $1 is now), newest first, by the partial index.
const BLOCKS: Sql = Sql::same(
    r#"
select scope, key, blocked_at, blocked_until, block_unverified, block_verified from fraud_scope
where blocked_until > $1 and blocked_at <= $2
order by blocked_at desc
limit 1000
"#,
);

// A custom SMS has no code to count, but a block refuses it.
const BLOCKED_SCOPE: Sql = Sql::same(
    r#"
select scope from fraud_scope
where ((scope = 'prefix' and key = $1) or (scope = 'country' and key = $2)) and blocked_until > $3
order by scope desc
limit 1
"#,
);

// Scopes with nothing left in the window and no block running.
const PURGE: Sql = Sql::same(
    r#"
delete from fraud_scope where updated_at < $1 and (blocked_until is null or blocked_until < $2)
"#,
);

// Postgres only: the approvals no send to their scope has moved in (`postgres::PG_CHECK_FRAUD`).
const PG_PURGE_CONVERSIONS: &str = "delete from fraud_conversion where created_at < $1";

/// The parameters of ADJUST for one scope.
fn adjust_params<'a>(
    scope: FraudScope,
    key: &'a str,
    slot: i64,
    unverified: i32,
    verified: i32,
    now: OffsetDateTime,
) -> [Param<'a>; 8] {
    [
        Param::Text(scope.as_str()),
        Param::Text(key),
        Param::Int8(slot),
        Param::Int4(position(slot)),
        Param::Int4(unverified),
        Param::Int4(verified),
        Param::Time(now),
        Param::Int8(RING_SLOTS),
    ]
}

/// SQLite, inside a transaction: moves counts of one scope's slot (see ADJUST).
pub(super) async fn adjust_sqlite(
    tx: &mut SqliteConnection,
    scope: FraudScope,
    key: &str,
    slot: i64,
    unverified: i32,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    let params = adjust_params(scope, key, slot, unverified, 0, now);
    db::sqlite(ADJUST.sqlite, &params).execute(&mut *tx).await?;
    Ok(())
}

/// ADJUST's parameters for both scopes of a counted send, prefix first (the sends' lock order):
/// `unverified` and `verified` are added (-1 and 1 for an approval).
fn adjustments(
    counted: &FraudCounted,
    unverified: i32,
    verified: i32,
    now: OffsetDateTime,
) -> [[Param<'_>; 8]; 2] {
    let at = |scope, key| adjust_params(scope, key, counted.slot, unverified, verified, now);
    [
        at(FraudScope::Prefix, &counted.prefix),
        at(FraudScope::Country, &counted.country),
    ]
}

/// Moves counts of a counted send's slot in both its scopes, each in its own statement.
pub(super) async fn adjust(
    db: &Db,
    counted: &FraudCounted,
    unverified: i32,
    verified: i32,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    for params in adjustments(counted, unverified, verified, now) {
        db.execute(ADJUST, &params).await?;
    }
    Ok(())
}

/// `adjust`, inside a transaction (an approval that records itself statement by statement).
pub(super) async fn adjust_in(
    tx: &mut Tx,
    counted: &FraudCounted,
    unverified: i32,
    verified: i32,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    for params in adjustments(counted, unverified, verified, now) {
        tx.execute(ADJUST, &params).await?;
    }
    Ok(())
}

/// Deletes scopes untouched since `before` whose block (if any) ended before `now`.
pub(super) async fn purge(
    db: &Db,
    before: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<u64, StorageError> {
    let purged = db
        .execute(PURGE, &[Param::Time(before), Param::Time(now)])
        .await?;
    // Approvals of scopes nobody has sent to since: their slots have left the window.
    if let Db::Postgres(conns) = db {
        conns
            .execute(db::postgres(PG_PURGE_CONVERSIONS, &[Param::Time(before)]))
            .await?;
    }
    Ok(purged)
}

fn block(row: &Row) -> Result<FraudBlock, StorageError> {
    Ok(FraudBlock {
        scope: FraudScope::parse(&row.get::<String>(0)?)?,
        key: row.get(1)?,
        since: row.time(2)?,
        until: row.time(3)?,
        unverified: row.opt_int(4)?.unwrap_or(0),
        verified: row.opt_int(5)?.unwrap_or(0),
    })
}

impl Storage {
    /// Blocks that ran at some time between `since` and `now` (the active ones when `since` is now),
    /// newest first.
    pub async fn fraud_blocks(
        &self,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Vec<FraudBlock>, StorageError> {
        let _turn = self.gate.enter().await?;
        let rows = self
            .db
            .fetch_all(BLOCKS, &[Param::Time(since), Param::Time(now)])
            .await?;
        rows.iter().map(block).collect()
    }

    /// Ends a running block and forgives the unverified messages counted against its scope.
    /// False when there was no running block under that key.
    pub async fn lift_fraud_block(
        &self,
        scope: FraudScope,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StorageError> {
        let _turn = self.gate.enter().await?;
        let params = [
            Param::Text(scope.as_str()),
            Param::Text(key),
            Param::Time(now),
        ];
        Ok(self.db.execute(LIFT, &params).await? > 0)
    }

    /// The scope whose running block covers this destination, if one does.
    pub async fn fraud_blocked(
        &self,
        prefix: &str,
        country: &str,
        now: OffsetDateTime,
    ) -> Result<Option<FraudScope>, StorageError> {
        let _turn = self.gate.enter().await?;
        let params = [Param::Text(prefix), Param::Text(country), Param::Time(now)];
        match self.db.fetch_optional(BLOCKED_SCOPE, &params).await? {
            Some(row) => Ok(Some(FraudScope::parse(&row.get::<String>(0)?)?)),
            None => Ok(None),
        }
    }
}
