//! The fraud guard's Postgres CTEs: its half of the send statement (the decision per scope) and of
//! the check statement (an approval's move from unverified to verified). SQLite runs the same
//! decision as one upsert per scope (`super::SQLITE_FRAUD`).

// Postgres: the fraud guard's CTEs, first in the send statement. `locked` takes the number's row
// lock before the scopes' (an approval holds it while it updates them: same order, no deadlock).
// `queued` then waits its turn for the prefix and the country on transaction-scoped advisory locks
// (classes 0x7076_0001 and 0x7076_0002: "pv" 1 and 2), so concurrent sends to one scope wait in a queue and are
// woken one at a time. Without it they all wait on the row's upsert, and each commit wakes every
// waiter to retry its insert: at 64 clients that was 290 instead of 830 flows/s and 6 ms of
// Postgres CPU per flow. A collision of two keys' hashes only makes them queue together.
// Each scope's upsert decides from the row it holds locked: U and V are the row's totals, kept for
// its newest slot; when a new slot starts ($20, the current slot), they are summed afresh over the
// ring's live slots ($22 the ring size), once per slot. over = U >= max(floor, ratio x V); it counts
// the send (in monitor mode always) unless enforce mode refuses, and the first send over the
// limit blocks the scope until $26. The country is only reached when the prefix counted the
// send; `fraud_ok` says whether both did. $18: 0 not counted, 1 monitor, 2 enforce.
pub(in crate::storage) const PG_FRAUD_HEAD: &str = r#"
with locked as (
    select 1 from verification where phone_number = $1 and $18 > 0 for update
), queued as (
    select pg_advisory_xact_lock(1886781441, hashtext($19)),
           pg_advisory_xact_lock(1886781442, hashtext($15))
    where $18 > 0 and (select count(*) from locked) >= 0
)"#;

// One scope's upsert, written once: `pg_fraud()` fills it in for the prefix and the country from
// PG_FRAUD_SCOPES (tools/ceiling/gen_flow_sql.py reads both).
pub(in crate::storage) const PG_FRAUD_SCOPE: &str = r#"
{cte} as (
    insert into fraud_scope as f (scope, key, slots, unverified, verified, newest_slot,
                                  unverified_total, verified_total, outcome, updated_at)
    select '{scope}', {key},
        array_fill(-1::int8, array[$21 - 1]) || $20::int8 || array_fill(-1::int8, array[$22 - $21]),
        array_fill(0, array[$21 - 1]) || 1 || array_fill(0, array[$22 - $21]),
        array_fill(0, array[$22]), $20, 1, 0, 1, $6
    where {gate}
    on conflict (scope, key) do update set
        (slots, unverified, verified, newest_slot, unverified_total, verified_total, outcome,
         blocked_at, blocked_until, block_unverified, block_verified, updated_at) =
        (select case when d.counts then f.slots[1:($21 - 1)] || $20::int8 || f.slots[($21 + 1):]
                     else f.slots end,
                case when d.counts then f.unverified[1:($21 - 1)] || (d.here_u + 1) || f.unverified[($21 + 1):]
                     else f.unverified end,
                case when d.counts then f.verified[1:($21 - 1)] || d.here_v || f.verified[($21 + 1):]
                     else f.verified end,
                $20, d.u + case when d.counts then 1 else 0 end, d.v,
                case when d.counts then 1 else 0 end + case when d.blocks then 2 else 0 end
                    + case when d.blocked or d.over then 4 else 0 end,
                case when d.blocks then $6 else f.blocked_at end,
                case when d.blocks then $26 else f.blocked_until end,
                case when d.blocks then d.u else f.block_unverified end,
                case when d.blocks then d.v else f.block_verified end,
                $6
         from (select w.*, ($18 = 1 or not (w.blocked or w.over)) as counts,
                      (w.over and not w.blocked) as blocks
               from (select s.*, coalesce(f.blocked_until > $6, false) as blocked,
                            s.u >= greatest({floor}::float8, $25 * s.v) as over
                     from (select
                         case when f.newest_slot = $20 then f.unverified_total
                              else (select coalesce(sum(x.u), 0)::int from unnest(f.slots, f.unverified) x(s, u)
                                    where x.s between $20 - $22 + 1 and $20) end as u,
                         case when f.newest_slot = $20 then f.verified_total
                              else (select coalesce(sum(x.v), 0)::int from unnest(f.slots, f.verified) x(s, v)
                                    where x.s between $20 - $22 + 1 and $20) end as v,
                         case when f.slots[$21] = $20 then f.unverified[$21] else 0 end as here_u,
                         case when f.slots[$21] = $20 then f.verified[$21] else 0 end as here_v) s) w) d)
    returning outcome, block_unverified, block_verified
)"#;

// {cte}, {scope}, {key}, {floor}, {gate}: the prefix's is reached once the number's row is locked,
// the country's only when the prefix counted the send.
pub(in crate::storage) const PG_FRAUD_SCOPES: [[&str; 5]; 2] = [
    [
        "fraud_prefix",
        "prefix",
        "$19",
        "$23",
        "$18 > 0 and (select count(*) from queued) >= 0",
    ],
    [
        "fraud_country",
        "country",
        "$15",
        "$24",
        "$18 > 0 and exists (select 1 from fraud_prefix where outcome & 1 = 1)",
    ],
];

pub(in crate::storage) const PG_FRAUD_TAIL: &str = r#"
, fraud_ok as (
    select $18 = 0 or exists (select 1 from fraud_country where outcome & 1 = 1) as ok
)"#;

/// The fraud guard's CTEs of the send statement: the lock, each scope's upsert, `fraud_ok`.
pub(in crate::storage) fn pg_fraud() -> String {
    let mut sql = PG_FRAUD_HEAD.to_string();
    for [cte, scope, key, floor, gate] in PG_FRAUD_SCOPES {
        sql.push(',');
        sql.push_str(
            &PG_FRAUD_SCOPE
                .replace("{cte}", cte)
                .replace("{scope}", scope)
                .replace("{key}", key)
                .replace("{floor}", floor)
                .replace("{gate}", gate),
        );
    }
    sql.push_str(PG_FRAUD_TAIL);
    sql
}

// The final select's fraud columns (after the send's own three).
pub(in crate::storage) const PG_FRAUD_COLUMNS: &str = r#",
    (select outcome from fraud_prefix), (select block_unverified from fraud_prefix),
    (select block_verified from fraud_prefix), (select outcome from fraud_country),
    (select block_unverified from fraud_country), (select block_verified from fraud_country)
"#;

// Postgres: the approval's half of ADJUST, inside the check statement (after PG_CHECK_RECORDS'
// own CTEs): the approved send's slot comes from the number's row; prefix ($5) before country
// ($6), the order the sends lock them in. $7 is the ring size; the totals change only while the
// slot is live for them (within the ring's size of the row's newest slot).
pub(in crate::storage) const PG_CHECK_FRAUD: &str = r#"
, approved_slot as (
    select c.fraud_slot as slot, (c.fraud_slot % $7 + 1)::int as i from checked c
    where c.approved and c.fraud_slot is not null
), converted_prefix as (
    update fraud_scope f set
        unverified = f.unverified[1:(p.i - 1)] || greatest(f.unverified[p.i] - 1, 0) || f.unverified[(p.i + 1):],
        verified = f.verified[1:(p.i - 1)] || (f.verified[p.i] + 1) || f.verified[(p.i + 1):],
        unverified_total = f.unverified_total - case when p.slot > f.newest_slot - $7 and f.unverified[p.i] > 0 then 1 else 0 end,
        verified_total = f.verified_total + case when p.slot > f.newest_slot - $7 then 1 else 0 end,
        updated_at = $3
    from approved_slot p
    where f.scope = 'prefix' and f.key = $5 and f.slots[p.i] = p.slot
    returning 1
), converted_country as (
    update fraud_scope f set
        unverified = f.unverified[1:(p.i - 1)] || greatest(f.unverified[p.i] - 1, 0) || f.unverified[(p.i + 1):],
        verified = f.verified[1:(p.i - 1)] || (f.verified[p.i] + 1) || f.verified[(p.i + 1):],
        unverified_total = f.unverified_total - case when p.slot > f.newest_slot - $7 and f.unverified[p.i] > 0 then 1 else 0 end,
        verified_total = f.verified_total + case when p.slot > f.newest_slot - $7 then 1 else 0 end,
        updated_at = $3
    from approved_slot p
    where f.scope = 'country' and f.key = $6 and f.slots[p.i] = p.slot
      and (select count(*) from converted_prefix) >= 0
)"#;
