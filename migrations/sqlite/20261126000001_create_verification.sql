-- One row per phone number: its current verification and its recent sends.
-- Same shape as the Postgres table; times are Unix milliseconds (INTEGER) so they compare as numbers,
-- and send_times is a JSON array of such times.
create table verification (
    phone_number     text primary key not null,
    verification_id  blob not null,
    status           text not null check (status in ('pending', 'approved', 'failed')),
    code_hash        blob,
    attempts         integer not null default 0,
    expires_at       integer not null,
    current_send_id  blob not null,
    send_times       text not null default '[]',
    approved_at      integer,
    created_at       integer not null,
    updated_at       integer not null
) strict;

create index verification_updated_at_idx on verification (updated_at);
