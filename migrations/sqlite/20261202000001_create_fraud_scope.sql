-- Same table as Postgres: times are Unix milliseconds, the ring's arrays are JSON arrays.
-- The fraud guard (SMS pumping): per destination prefix and per country, the code messages sent
-- over FRAUD_WINDOW_MINUTES that were verified and those that were not, and the block a scope is
-- under.
create table fraud_scope (
    scope             text not null check (scope in ('prefix', 'country')),
    key               text not null,
    -- The ring of time slots: slot numbers, unverified and verified counts, position by position.
    slots             text not null,
    unverified        text not null,
    verified          text not null,
    -- The live totals as of newest_slot, the latest slot a send counted in.
    newest_slot       integer not null,
    unverified_total  integer not null,
    verified_total    integer not null,
    -- 1 counted, 2 blocked the scope, 4 over the limit or blocked: what the last send did.
    outcome           integer not null,
    blocked_at        integer,
    blocked_until     integer,
    block_unverified  integer,
    block_verified    integer,
    updated_at        integer not null,
    primary key (scope, key)
) strict;

create index fraud_scope_blocked_until_idx on fraud_scope (blocked_until)
    where blocked_until is not null;
create index fraud_scope_updated_at_idx on fraud_scope (updated_at);

alter table verification add column fraud_slot integer;
