-- Verifications and messages kept for DATA_RETENTION_HOURS, for lookups, stats and delivery status.
-- The per-number `verification` row stays the lock that keeps the limits atomic; these tables are
-- written by the same statements that change it.

-- One row per verification_id: what a lookup shows once the number's row has moved on to a newer
-- verification (only an approved one is ever replaced).
create table verification_record (
    verification_id  uuid primary key,
    phone_number     text not null,
    -- pending or approved; expired, max_attempts_reached and failed are read from the number's row.
    status           text not null check (status in ('pending', 'approved')),
    -- Wrong attempts, as of approval (the number's row counts them while pending).
    attempts         integer not null default 0,
    expires_at       timestamptz not null,
    approved_at      timestamptz,
    created_at       timestamptz not null,
    updated_at       timestamptz not null
);

-- Lookup by number, newest first; purge by age.
create index verification_record_phone_idx on verification_record (phone_number, created_at);
create index verification_record_updated_at_idx on verification_record (updated_at);
-- The number's row of a verification, for the lookup by id.
create index verification_verification_id_idx on verification (verification_id);

-- One row per message handed to a provider: a code by any channel, or a custom SMS.
create table message (
    -- The send's id: verification.current_send_id for codes.
    message_id           uuid primary key,
    -- Null for custom SMS.
    verification_id      uuid,
    phone_number         text not null,
    -- ISO 3166 alpha-2 of the destination ('XX' when unknown).
    country              text not null,
    channel              text not null check (channel in ('sms', 'whatsapp', 'call')),
    provider             text not null,
    provider_message_id  text,
    -- Never moves back: sending < accepted < sent < rejected|delivered|undelivered|failed < read.
    status               text not null check (status in ('sending', 'rejected', 'accepted', 'sent',
                             'delivered', 'undelivered', 'failed', 'read')),
    error_code           text,
    is_code              boolean not null,
    fallback_of          uuid,
    created_at           timestamptz not null,
    status_updated_at    timestamptz not null,
    -- When the provider took it (the delivery time is measured from here).
    accepted_at          timestamptz,
    -- When its code was approved: the message converted.
    verified_at          timestamptz
);

create index message_verification_idx on message (verification_id);
-- Status callbacks find their message by the provider's id.
create unique index message_provider_idx on message (provider, provider_message_id);
-- Stats over a time window; purge by age.
create index message_created_at_idx on message (created_at);
