//! The send_counter table: sends per client IP and per destination country in fixed one-hour
//! windows (UTC clock hours), shared by all instances.

use sqlx::SqliteConnection;
use time::OffsetDateTime;

use super::StorageError;
use super::db::{self, Db, Param, Row, Sql};
use super::outcomes::{CapScope, CounterCap, NewSend};
use super::pg_conns::PgConns;

// Postgres: the counters are CTEs of the send statement (one round trip), after the fraud guard's
// (`fraud::pg_fraud()`, whose `fraud_ok` they wait for). The client IP's and the country's counters for this
// hour are taken, each only while under its cap ($11 and $14, 0 = not counted); `counted` says
// whether both were. $12 is the window's start.
pub(super) const PG_COUNTERS: &str = r#"
, ip as (
    insert into send_counter as c (scope, key, window_start, count)
    select 'ip', $10, $12, 1 where $11 > 0 and (select ok from fraud_ok)
    on conflict (scope, key, window_start) do update set count = c.count + 1
        where c.count < $11
    returning c.count
), country as (
    insert into send_counter as c (scope, key, window_start, count)
    select 'country', $13, $12, 1
    where $14 > 0 and (select ok from fraud_ok) and ($11 = 0 or exists (select 1 from ip))
    on conflict (scope, key, window_start) do update set count = c.count + 1
        where c.count < $14
    returning c.count
), counted as (
    select (select ok from fraud_ok)
       and ($11 = 0 or exists (select 1 from ip))
       and ($14 = 0 or exists (select 1 from country)) as ok
)"#;

// SQLite runs the counters and the send as separate statements in one transaction; it has one
// writer at a time, and no network round trips to save.
const SQLITE_COUNT: &str = r#"
insert into send_counter (scope, key, window_start, count) values ($1, $2, $3, 1)
on conflict (scope, key, window_start) do update set count = count + 1 where count < $4
returning count
"#;

// Gives counted sends back: a refused or failed send does not count. Postgres gives back both
// counters in one round trip; SQLite one key at a time, by primary key, in the caller's transaction.
const PG_UNCOUNT: &str = r#"
update send_counter set count = count - 1
where window_start = $1 and count > 0
  and ((scope = 'ip' and key = $2 and $3) or (scope = 'country' and key = $4 and $5))
"#;

const SQLITE_UNCOUNT: &str = r#"
update send_counter set count = count - 1
where scope = $1 and key = $2 and window_start = $3 and count > 0
"#;

const PURGE_COUNTERS: Sql = Sql::same("delete from send_counter where window_start < $1");

/// The key and cap to bind for a counter in `PG_COUNTERS`; a cap of 0 means "not counted".
pub(super) fn cap_binds(cap: &Option<CounterCap>) -> (&str, i64) {
    match cap {
        Some(c) => (c.key.as_str(), i64::from(c.max)),
        None => ("", 0),
    }
}

/// SQLite: counts the send in its counters, inside the send's transaction. Returns the counts
/// (`None`: not counted), or `Err(scope)` for a full counter; the caller then rolls back.
pub(super) async fn count_sqlite(
    tx: &mut SqliteConnection,
    send: &NewSend<'_>,
    window: OffsetDateTime,
) -> Result<Result<[Option<i64>; 2], CapScope>, StorageError> {
    let mut counts = [None, None];
    for (slot, (scope, cap)) in [
        (CapScope::ClientIp, &send.ip_cap),
        (CapScope::Country, &send.country_cap),
    ]
    .into_iter()
    .enumerate()
    {
        let Some(cap) = cap else { continue };
        let params = [
            Param::Text(scope.as_str()),
            Param::Text(&cap.key),
            Param::Time(window),
            Param::Int8(i64::from(cap.max)),
        ];
        let row = db::sqlite(SQLITE_COUNT, &params)
            .fetch_optional(&mut *tx)
            .await?;
        match row.map(Row::Sqlite) {
            Some(row) => counts[slot] = Some(row.int(0)?),
            None => return Ok(Err(scope)),
        }
    }
    Ok(Ok(counts))
}

/// Postgres: gives back the counters a send was counted in.
pub(super) async fn uncount_postgres(
    pool: &PgConns,
    window: OffsetDateTime,
    counted: &[(CapScope, String)],
) -> Result<(), StorageError> {
    if counted.is_empty() {
        return Ok(());
    }
    let ip = counted.iter().find(|(s, _)| *s == CapScope::ClientIp);
    let country = counted.iter().find(|(s, _)| *s == CapScope::Country);
    let params = [
        Param::Time(window),
        Param::Text(ip.map(|(_, k)| k.as_str()).unwrap_or("")),
        Param::Bool(ip.is_some()),
        Param::Text(country.map(|(_, k)| k.as_str()).unwrap_or("")),
        Param::Bool(country.is_some()),
    ];
    pool.execute(db::postgres(PG_UNCOUNT, &params)).await?;
    Ok(())
}

/// SQLite: gives back the counters a send was counted in, inside the caller's transaction.
pub(super) async fn uncount_sqlite(
    tx: &mut SqliteConnection,
    window: OffsetDateTime,
    counted: &[(CapScope, String)],
) -> Result<(), StorageError> {
    for (scope, key) in counted {
        let params = [
            Param::Text(scope.as_str()),
            Param::Text(key),
            Param::Time(window),
        ];
        db::sqlite(SQLITE_UNCOUNT, &params)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Deletes the windows that started before `window`.
pub(super) async fn purge(db: &Db, window: OffsetDateTime) -> Result<u64, StorageError> {
    db.execute(PURGE_COUNTERS, &[Param::Time(window)]).await
}

/// The counters a send statement incremented.
pub(super) fn counted_caps(send: &NewSend<'_>, ip: bool, country: bool) -> Vec<(CapScope, String)> {
    let mut counted = Vec::new();
    if let (true, Some(c)) = (ip, &send.ip_cap) {
        counted.push((CapScope::ClientIp, c.key.clone()));
    }
    if let (true, Some(c)) = (country, &send.country_cap) {
        counted.push((CapScope::Country, c.key.clone()));
    }
    counted
}

/// The counters this send brought exactly to their cap.
pub(super) fn filled_caps(
    send: &NewSend<'_>,
    ip_count: Option<i64>,
    country_count: Option<i64>,
) -> Vec<(CapScope, String)> {
    let mut filled = Vec::new();
    if let (Some(n), Some(c)) = (ip_count, &send.ip_cap)
        && n == i64::from(c.max)
    {
        filled.push((CapScope::ClientIp, c.key.clone()));
    }
    if let (Some(n), Some(c)) = (country_count, &send.country_cap)
        && n == i64::from(c.max)
    {
        filled.push((CapScope::Country, c.key.clone()));
    }
    filled
}

/// The counter that refused the send, if one did.
pub(super) fn refused_cap(
    send: &NewSend<'_>,
    ip_counted: bool,
    country_counted: bool,
) -> Option<CapScope> {
    if send.ip_cap.is_some() && !ip_counted {
        return Some(CapScope::ClientIp);
    }
    if send.country_cap.is_some() && !country_counted {
        return Some(CapScope::Country);
    }
    None
}
