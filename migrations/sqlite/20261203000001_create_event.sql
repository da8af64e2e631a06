-- Same table as Postgres: times are Unix milliseconds, uuids blobs.
-- The outbox of outgoing events (EVENTS_WEBHOOK_URL): one row per event, written by the same
-- transaction as the change it reports, deleted once delivered or dropped.
create table event (
    -- The rowid: insertion order, which is commit order with SQLite's one writer.
    event_seq         integer primary key,
    event_id          blob not null,
    event_type        text not null check (event_type in ('verification.approved',
                          'verification.max_attempts_reached', 'message.status', 'fraud.blocked')),
    verification_id   blob,
    message_id        blob,
    phone_number      text,
    channel           text,
    status            text,
    error_code        text,
    fraud_scope       text,
    fraud_key         text,
    blocked_until     integer,
    block_unverified  integer,
    block_verified    integer,
    created_at        integer not null,
    next_attempt_at   integer not null,
    locked_by         blob,
    locked_until      integer,
    attempts          integer not null default 0
) strict;

create index event_next_attempt_at_idx on event (next_attempt_at);
create index event_verification_idx on event (verification_id, event_seq);
