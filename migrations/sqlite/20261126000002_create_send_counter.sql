-- Sends per client IP and per destination country in fixed one-hour windows (UTC clock hours);
-- window_start is Unix milliseconds. See the Postgres migration for the meaning of the columns.
create table send_counter (
    scope         text not null check (scope in ('ip', 'country')),
    key           text not null,
    window_start  integer not null,
    count         integer not null check (count >= 0),
    primary key (scope, key, window_start)
) strict;

create index send_counter_window_start_idx on send_counter (window_start);
