-- Rollups (DESIGN §5; decimals as TEXT, summed in the collector): raw heartbeats older than
-- `retention.raw_days` are summed into hourly rows, hourly rows older than
-- `retention.hourly_days` into daily rows, each move in one
-- transaction (added to the rollup and deleted from the source), so every increment is in
-- exactly one place and sums over raw + hourly + daily stay exact.

CREATE TABLE heartbeat_hours (
    machine_id      TEXT NOT NULL,
    hour_ms         INTEGER NOT NULL,
    currency        TEXT NOT NULL,
    observed_ms     INTEGER NOT NULL,
    idle_ms         INTEGER NOT NULL,
    unknown_ms      INTEGER NOT NULL,
    energy_j        TEXT NOT NULL,
    idle_energy_j   TEXT NOT NULL,
    cost            TEXT NOT NULL,
    idle_cost       TEXT NOT NULL,
    co2_g           TEXT NOT NULL,
    idle_co2_g      TEXT NOT NULL,
    PRIMARY KEY (machine_id, hour_ms, currency)
);
CREATE INDEX heartbeat_hours_hour ON heartbeat_hours (hour_ms);

CREATE TABLE heartbeat_days (
    machine_id      TEXT NOT NULL,
    day_ms          INTEGER NOT NULL,
    currency        TEXT NOT NULL,
    observed_ms     INTEGER NOT NULL,
    idle_ms         INTEGER NOT NULL,
    unknown_ms      INTEGER NOT NULL,
    energy_j        TEXT NOT NULL,
    idle_energy_j   TEXT NOT NULL,
    cost            TEXT NOT NULL,
    idle_cost       TEXT NOT NULL,
    co2_g           TEXT NOT NULL,
    idle_co2_g      TEXT NOT NULL,
    PRIMARY KEY (machine_id, day_ms, currency)
);
CREATE INDEX heartbeat_days_day ON heartbeat_days (day_ms);
