-- Approvals that the fraud guard has not yet moved from unverified to verified (Postgres only). A
-- verify inserts one row per scope here instead of updating the scope's fraud_scope row, which every
-- send to the scope locks until it commits; the next send to the scope deletes the rows and moves
-- them in its own update of that row. So only sends take turns on a scope's row. The table holds
-- the approvals of the last moments, and those of scopes nobody has sent to since (purged with
-- their window).
create table fraud_conversion (
    scope       text not null,
    key         text not null,
    -- The fraud guard's time slot of the approved send (verification.fraud_slot).
    slot        bigint not null,
    created_at  timestamptz not null
);

-- The send's delete of its scope's rows.
create index fraud_conversion_scope on fraud_conversion (scope, key);
