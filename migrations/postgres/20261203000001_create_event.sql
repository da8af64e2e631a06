-- The outbox of outgoing events (EVENTS_WEBHOOK_URL): one row per event, written by the same
-- statement or transaction as the change it reports, deleted once delivered or dropped (after
-- EVENTS_MAX_AGE_HOURS). Each instance's dispatcher claims due rows with a lease.
create table event (
    -- Insertion order: the events of one verification are delivered in this order.
    event_seq         bigint generated always as identity primary key,
    -- The webhook-id (`evt_` and these 32 hex digits): the same on every try.
    event_id          uuid not null,
    event_type        text not null check (event_type in ('verification.approved',
                          'verification.max_attempts_reached', 'message.status', 'fraud.blocked')),
    -- What the body's `data` carries; which columns are set depends on the type.
    verification_id   uuid,
    message_id        uuid,
    phone_number      text,
    channel           text,
    -- message.status: the new status and the provider's error code.
    status            text,
    error_code        text,
    -- fraud.blocked: the block, which began at created_at, and the counts that made it.
    fraud_scope       text,
    fraud_key         text,
    blocked_until     timestamptz,
    block_unverified  integer,
    block_verified    integer,
    -- When the change happened: the body's `timestamp`, and where EVENTS_MAX_AGE_HOURS counts from.
    created_at        timestamptz not null,
    -- When the next try is due. A claim moves it to the end of the lease, so a claimed event is
    -- due again only if its instance died before it answered.
    next_attempt_at   timestamptz not null,
    -- The lease: which dispatcher holds the event, until when (null when nobody does).
    locked_by         uuid,
    locked_until      timestamptz,
    -- Tries so far (counted at each claim): the backoff doubles with each.
    attempts          integer not null default 0
);

-- The dispatcher's claim of due events (and the purge of stale ones), by due time.
create index event_next_attempt_at_idx on event (next_attempt_at);
-- "No older event of the same verification is pending": delivery in order per verification.
create index event_verification_idx on event (verification_id, event_seq);
