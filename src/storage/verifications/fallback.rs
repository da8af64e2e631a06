//! A fallback send: a new code for a verification whose current code message was reported
//! undelivered, by another channel. It is a send like the others (the same fraud guard and
//! counters, the hourly cap), without the cooldown, and only while the verification is pending,
//! unexpired, and still on the failed message: so of two instances that both got the report, or
//! a send that came in between, at most one new code goes out for one failure.

// Postgres: after PG_FRAUD and PG_COUNTERS, in place of PG_START_SEND / PG_RESEND; the same binds
// plus $28, the failed message. $2 (a new verification's id) and $7 (the cooldown) are bound but
// not used: a fallback renews its verification and does not wait.
pub(super) const PG_FALLBACK_SEND: &str = r#"
, sent as (
    update verification v set
        code_hash = $3,
        attempts = 0,
        expires_at = $4,
        current_send_id = $5,
        send_times = array(select t from unnest(v.send_times) t where t > $8) || $6::timestamptz,
        fraud_slot = case when $18 > 0 then $20::int8 end,
        updated_at = $6
    where phone_number = $1
      and (select ok from counted)
      and status = 'pending'
      and expires_at > $6
      and current_send_id = $28
      and (select count(*) from unnest(v.send_times) t where t > $8) < $9
    returning v.verification_id
)
"#;

// Postgres: the record's new expiry and the new message, which names the failed one; then the
// same final select as PG_RECORDS (PG_FRAUD_COLUMNS completes it).
pub(super) const PG_FALLBACK_RECORDS: &str = r#"
, new_record as (
    update verification_record r set attempts = 0, expires_at = $4, updated_at = $6
    from sent where r.verification_id = sent.verification_id
), new_message as (
    insert into message (message_id, verification_id, phone_number, country, channel, provider,
                         status, is_code, fallback_of, created_at, status_updated_at)
    select $5, verification_id, $1, $15, $16, $17, 'sending', true, $28, $6, $6 from sent
)
select (select verification_id from sent), (select count from ip), (select count from country)"#;

// SQLite: the same conditions, in the send's transaction ($10 the fraud slot, $11 the failed
// message; $2 and $7 named only so that every bound value has its placeholder).
pub(super) const SQLITE_FALLBACK: &str = r#"
update verification set
    code_hash = $3,
    attempts = 0,
    expires_at = $4,
    current_send_id = $5,
    send_times = (select json_group_array(value) from (
        select value from json_each(verification.send_times) where value > $8
        union all select $6)),
    fraud_slot = $10,
    updated_at = $6
where phone_number = $1
  and status = 'pending'
  and expires_at > $6
  and current_send_id = $11
  and (select count(*) from json_each(verification.send_times) where value > $8) < $9
  and ($2 is null or 1) and ($7 is null or 1)
returning verification_id
"#;

pub(super) const SQLITE_FALLBACK_MESSAGE: &str = r#"
insert into message (message_id, verification_id, phone_number, country, channel, provider,
                     status, is_code, fallback_of, created_at, status_updated_at)
values ($1, $2, $3, $4, $5, $6, 'sending', 1, $8, $7, $7)
"#;
