-- One row per phone number: its current verification and its recent sends.
--
-- Every limit is checked by the statement that changes the row, so the row lock taken by
-- INSERT ... ON CONFLICT DO UPDATE / UPDATE serializes concurrent requests for one number, across
-- all instances that share this database.
create table verification (
    -- E.164, normalized by the service.
    phone_number     text primary key,
    -- Stays the same across resends of a pending verification; a new one after approval.
    verification_id  uuid not null,
    -- pending: a code is out (or being sent); approved: verified, code used up;
    -- failed: the last SMS could not be sent, no code is usable.
    status           text not null check (status in ('pending', 'approved', 'failed')),
    -- HMAC-SHA256 of the code under CODE_HASH_SECRET, bound to the number. Null once used, after a
    -- failed send, or when the SMS provider keeps the code itself (Twilio Verify).
    code_hash        bytea,
    -- Wrong attempts against the current code.
    attempts         integer not null default 0,
    expires_at       timestamptz not null,
    -- The send that installed the current code; lets a failed send undo itself and nothing newer.
    current_send_id  uuid not null,
    -- Times of the sends within the last hour (older ones are dropped as sends come in):
    -- the cooldown and the hourly cap are read from here.
    send_times       timestamptz[] not null default '{}',
    approved_at      timestamptz,
    created_at       timestamptz not null,
    updated_at       timestamptz not null
);

-- The purge task deletes rows by age.
create index verification_updated_at_idx on verification (updated_at);
