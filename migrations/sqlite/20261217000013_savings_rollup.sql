-- The what-if savings rollup (collector/src/accounting/savings.rs): per UTC hour, what the
-- recorded intervals ending in it give for every "sleep after N minutes" at once, so a what-if
-- over days of a large fleet sums a few rows instead of reading every raw heartbeat. The
-- collector fills it from the raw heartbeats (a cursor per machine) and deletes it with them.

-- Savings (kind 0: whole intervals, for every N up to n; kind 1: intervals whose sleep starts
-- inside, for N = n) and changes in the number of sleeps beginning (kind 2 + what came before,
-- from N = n on), by hour, attribution as incurred and business/after-hours part.
CREATE TABLE savings_hours (
    hour_ms     BIGINT NOT NULL,
    site_id     BIGINT NOT NULL,
    department  TEXT NOT NULL,
    currency    TEXT NOT NULL,
    after_hours BIGINT NOT NULL,
    kind        BIGINT NOT NULL,
    n           BIGINT NOT NULL,
    slept_ms    BIGINT NOT NULL,
    energy_j    TEXT NOT NULL,
    cost        TEXT NOT NULL,
    co2_g       TEXT NOT NULL,
    sleeps      BIGINT NOT NULL,
    PRIMARY KEY (hour_ms, site_id, department, currency, after_hours, kind, n)
);

-- Per machine, hour and place: the largest N under which it would have slept there at all,
-- and after hours (0: never) — machines affected are counted from these.
CREATE TABLE savings_reach (
    hour_ms     BIGINT NOT NULL,
    machine     BIGINT NOT NULL,
    site_id     BIGINT NOT NULL,
    department  TEXT NOT NULL,
    reach       BIGINT NOT NULL,
    after_hours BIGINT NOT NULL,
    PRIMARY KEY (hour_ms, machine, site_id, department)
);

-- How far each machine's raw heartbeats are rolled up (sent_at), and its last interval idle
-- over a minute (whether the next one continues a sleep).
CREATE TABLE savings_cursors (
    machine      BIGINT PRIMARY KEY,
    through_ms   BIGINT NOT NULL,
    last_end_ms  BIGINT,
    last_idle_ms BIGINT
);
