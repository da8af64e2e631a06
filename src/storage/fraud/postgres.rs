//! The fraud guard's Postgres CTEs: its half of the send statement (the decision per scope, after
//! moving in the approvals left for the scope) and of the check statement (leaving the approval). SQLite runs the same
//! decision as one upsert per scope (`super::SQLITE_FRAUD`).

// Postgres: the fraud guard's CTEs, first in the send statement. `locked` takes the number's row
// lock before the scopes' (Twilio Verify's approvals hold it while they update them: same order, no
// deadlock).
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
// PG_FRAUD_SCOPES (tools/ceiling/gen_flow_sql.py reads both). `{cte}_folded` first takes the
// approvals that verifies left for the scope (PG_CHECK_FRAUD) and `g` moves them from unverified to
// verified in the row's ring (in the slot of their send, while that slot is still in the ring),
// before the decision reads it. It runs behind `queued`, so no two sends fold one scope at once; an
// approval that commits while a send waits is folded by the next one, which errs towards refusing.
pub(in crate::storage) const PG_FRAUD_SCOPE: &str = r#"
{cte}_folded as (
    delete from fraud_conversion c where c.scope = '{scope}' and c.key = {key} and {gate}
    returning c.slot
), {cte} as (
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
                case when d.counts then g.unverified[1:($21 - 1)] || (d.here_u + 1) || g.unverified[($21 + 1):]
                     else g.unverified end,
                case when d.counts then g.verified[1:($21 - 1)] || d.here_v || g.verified[($21 + 1):]
                     else g.verified end,
                $20, d.u + case when d.counts then 1 else 0 end, d.v,
                case when d.counts then 1 else 0 end + case when d.blocks then 2 else 0 end
                    + case when d.blocked or d.over then 4 else 0 end,
                case when d.blocks then $6 else f.blocked_at end,
                case when d.blocks then $26 else f.blocked_until end,
                case when d.blocks then d.u else f.block_unverified end,
                case when d.blocks then d.v else f.block_verified end,
                $6
         from (select array_agg(greatest(f.unverified[i] - k.n, 0) order by i) as unverified,
                      array_agg(f.verified[i] + k.n order by i) as verified,
                      (f.unverified_total - coalesce(sum(least(f.unverified[i], k.n))
                          filter (where f.slots[i] > f.newest_slot - $22), 0))::int as unverified_total,
                      (f.verified_total + coalesce(sum(k.n)
                          filter (where f.slots[i] > f.newest_slot - $22), 0))::int as verified_total
               from generate_subscripts(f.slots, 1) i
               cross join lateral (select count(*)::int as n from {cte}_folded x
                                   where x.slot = f.slots[i]) k) g
         cross join lateral (select w.*, ($18 = 1 or not (w.blocked or w.over)) as counts,
                      (w.over and not w.blocked) as blocks
               from (select s.*, coalesce(f.blocked_until > $6, false) as blocked,
                            s.u >= greatest({floor}::float8, $25 * s.v) as over
                     from (select
                         case when f.newest_slot = $20 then g.unverified_total
                              else (select coalesce(sum(x.u), 0)::int from unnest(f.slots, g.unverified) x(s, u)
                                    where x.s between $20 - $22 + 1 and $20) end as u,
                         case when f.newest_slot = $20 then g.verified_total
                              else (select coalesce(sum(x.v), 0)::int from unnest(f.slots, g.verified) x(s, v)
                                    where x.s between $20 - $22 + 1 and $20) end as v,
                         case when f.slots[$21] = $20 then g.unverified[$21] else 0 end as here_u,
                         case when f.slots[$21] = $20 then g.verified[$21] else 0 end as here_v) s) w) d)
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

// Postgres: the approval's half of the fraud guard, inside the check statement (after
// PG_CHECK_RECORDS' own CTEs): one `fraud_conversion` row per scope, prefix ($5) and country ($6),
// with the approved send's slot from the number's row. The scopes' rows are left to the next send
// to each scope (`{cte}_folded` in PG_FRAUD_SCOPE), so an approval does not wait for, or hold up,
// the sends that take turns on them.
pub(in crate::storage) const PG_CHECK_FRAUD: &str = r#"
, fraud_converted as (
    insert into fraud_conversion (scope, key, slot, created_at)
    select s.scope, s.key, c.fraud_slot, $3
    from checked c cross join (values ('prefix', $5), ('country', $6)) s(scope, key)
    where c.approved and c.fraud_slot is not null
)"#;
