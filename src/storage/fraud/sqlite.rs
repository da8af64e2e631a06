//! The fraud guard's SQLite half of a send: the same decision as `pg_fraud()`, as one upsert per
//! scope inside the send's transaction.

use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::{FraudCheck, FraudScope, RING_SLOTS, ScopeOutcome};
use crate::storage::StorageError;
use crate::storage::db::{self, Param, Row};

// SQLite: one scope's decision, the same as `pg_fraud()`'s, as one upsert inside the send's
// transaction (the ring as JSON arrays; $7 the slot's JSON path). The fresh row's arrays ($3 to
// $5) are made by the caller.
const SQLITE_FRAUD: &str = r#"
insert into fraud_scope (scope, key, slots, unverified, verified, newest_slot, unverified_total,
                         verified_total, outcome, updated_at)
values ($1, $2, $3, $4, $5, $8, 1, 0, 1, $6)
on conflict (scope, key) do update set
    (slots, unverified, verified, newest_slot, unverified_total, verified_total, outcome,
     blocked_at, blocked_until, block_unverified, block_verified, updated_at) =
    (select case when d.counts then json_set(fraud_scope.slots, $7, $8) else fraud_scope.slots end,
            case when d.counts then json_set(fraud_scope.unverified, $7, d.here_u + 1)
                 else fraud_scope.unverified end,
            case when d.counts then json_set(fraud_scope.verified, $7, d.here_v)
                 else fraud_scope.verified end,
            $8, d.u + d.counts, d.v,
            d.counts + 2 * d.blocks + 4 * (d.blocked or d.over),
            case when d.blocks then $6 else fraud_scope.blocked_at end,
            case when d.blocks then $12 else fraud_scope.blocked_until end,
            case when d.blocks then d.u else fraud_scope.block_unverified end,
            case when d.blocks then d.v else fraud_scope.block_verified end,
            $6
     from (select w.*, ($13 = 1 or not (w.blocked or w.over)) as counts,
                  (w.over and not w.blocked) as blocks
           from (select s.*, coalesce(fraud_scope.blocked_until > $6, 0) as blocked,
                        s.u >= max($10, $11 * s.v) as over
                 from (select
                     case when fraud_scope.newest_slot = $8 then fraud_scope.unverified_total
                          else (select coalesce(sum(u.value), 0) from json_each(fraud_scope.slots) t
                                join json_each(fraud_scope.unverified) u on u.key = t.key
                                where t.value between $9 and $8) end as u,
                     case when fraud_scope.newest_slot = $8 then fraud_scope.verified_total
                          else (select coalesce(sum(v.value), 0) from json_each(fraud_scope.slots) t
                                join json_each(fraud_scope.verified) v on v.key = t.key
                                where t.value between $9 and $8) end as v,
                     case when json_extract(fraud_scope.slots, $7) = $8
                          then json_extract(fraud_scope.unverified, $7) else 0 end as here_u,
                     case when json_extract(fraud_scope.slots, $7) = $8
                          then json_extract(fraud_scope.verified, $7) else 0 end as here_v) s) w) d)
returning outcome, block_unverified, block_verified
"#;

/// SQLite: the guard's half of a send, inside its transaction: the prefix, then (if the prefix
/// counted it) the country. Returns each scope's outcome (`None`: not reached).
pub(in crate::storage) async fn count_sqlite(
    tx: &mut SqliteConnection,
    check: &FraudCheck,
    now: OffsetDateTime,
) -> Result<[Option<ScopeOutcome>; 2], StorageError> {
    let i = check.position() as usize - 1;
    let ring = |value: i64, fill: i64| {
        let mut v = vec![fill; RING_SLOTS as usize];
        v[i] = value;
        serde_json::to_string(&v).unwrap_or_default()
    };
    let (slots, ones, zeros) = (ring(check.slot, -1), ring(1, 0), ring(0, 0));
    let path = format!("$[{i}]");
    let mut outcomes = [None, None];
    for (n, (scope, key, floor)) in [
        (FraudScope::Prefix, &check.prefix, check.min_per_prefix),
        (FraudScope::Country, &check.country, check.min_per_country),
    ]
    .into_iter()
    .enumerate()
    {
        let params = [
            Param::Text(scope.as_str()),
            Param::Text(key),
            Param::Text(&slots),
            Param::Text(&ones),
            Param::Text(&zeros),
            Param::Time(now),
            Param::Text(&path),
            Param::Int8(check.slot),
            Param::Int8(check.oldest_slot()),
            Param::Int8(i64::from(floor)),
            Param::Float(check.ratio),
            Param::Time(check.block_until),
            Param::Int4(FraudCheck::mode(Some(check))),
        ];
        let row = Row::Sqlite(
            db::sqlite(SQLITE_FRAUD, &params)
                .fetch_one(&mut *tx)
                .await?,
        );
        let outcome = ScopeOutcome::read(&row, 0)?;
        outcomes[n] = outcome;
        if !outcome.is_some_and(ScopeOutcome::counted) {
            break;
        }
    }
    Ok(outcomes)
}
