-- The fraud guard (SMS pumping): per destination prefix and per country, the code messages sent
-- over FRAUD_WINDOW_MINUTES that were verified and those that were not, and the block a scope is
-- under. One row per scope: every send to it updates the row under its lock, so concurrent sends
-- and instances see each other's counts.
create table fraud_scope (
    -- 'prefix': key is the first FRAUD_PREFIX_DIGITS characters of the E.164 number ('+447400');
    -- 'country': key is the ISO 3166 alpha-2 region ('XX' when unknown).
    scope             text not null check (scope in ('prefix', 'country')),
    key               text not null,
    -- A ring of time slots (each a fixed fraction of the window): position i holds the slot number
    -- slots[i] (Unix time divided by the slot's length) and the code messages sent in that slot
    -- that are still unverified and those verified. A position is reused when its slot comes round.
    slots             bigint[] not null,
    unverified        integer[] not null,
    verified          integer[] not null,
    -- The live totals of unverified and verified as of newest_slot, the latest slot a send counted
    -- in: a send in that slot decides from them in O(1); the first send of a new slot sums the
    -- ring afresh.
    newest_slot       bigint not null,
    unverified_total  integer not null,
    verified_total    integer not null,
    -- What the last send to the scope did, for the statement to return: 1 counted it, 2 blocked the
    -- scope, 4 was over the limit or blocked (refused, or in monitor mode would have been).
    outcome           integer not null,
    -- The latest block and the counts that made it; active while blocked_until is in the future.
    blocked_at        timestamptz,
    blocked_until     timestamptz,
    block_unverified  integer,
    block_verified    integer,
    updated_at        timestamptz not null,
    primary key (scope, key)
);

-- The blocks list; purge by age.
create index fraud_scope_blocked_until_idx on fraud_scope (blocked_until)
    where blocked_until is not null;
create index fraud_scope_updated_at_idx on fraud_scope (updated_at);

-- The slot the current send was counted in by the fraud guard (null: not counted), so that its
-- approval moves it from unverified to verified.
alter table verification add column fraud_slot bigint;
