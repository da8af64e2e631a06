-- Sends per client IP and per destination country, counted in fixed one-hour windows (UTC clock
-- hours) so the caps hold across all instances. A send increments its counters in the same
-- statement that records it, only while the counter is under its cap.
create table send_counter (
    -- 'ip': key is the client address (IPv4, or the /64 of an IPv6 address);
    -- 'country': key is the ISO 3166 alpha-2 region of the destination number.
    scope         text not null check (scope in ('ip', 'country')),
    key           text not null,
    window_start  timestamptz not null,
    count         integer not null check (count >= 0),
    primary key (scope, key, window_start)
);

-- The purge task deletes past windows.
create index send_counter_window_start_idx on send_counter (window_start);
