-- Rollups (DESIGN §5): raw heartbeats older than `retention.raw_days` are summed into hourly
-- rows, hourly rows older than `retention.hourly_days` into daily rows, each move in one
-- transaction (added to the rollup and deleted from the source), so every increment is in
-- exactly one place and sums over raw + hourly + daily stay exact.

CREATE TABLE heartbeat_hours (
    machine_id      TEXT COLLATE "C" NOT NULL,
    hour_ms         BIGINT NOT NULL,
    currency        TEXT COLLATE "C" NOT NULL,
    observed_ms     BIGINT NOT NULL,
    idle_ms         BIGINT NOT NULL,
    unknown_ms      BIGINT NOT NULL,
    energy_j        NUMERIC NOT NULL,
    idle_energy_j   NUMERIC NOT NULL,
    cost            NUMERIC NOT NULL,
    idle_cost       NUMERIC NOT NULL,
    co2_g           NUMERIC NOT NULL,
    idle_co2_g      NUMERIC NOT NULL,
    PRIMARY KEY (machine_id, hour_ms, currency)
);
CREATE INDEX heartbeat_hours_hour ON heartbeat_hours (hour_ms);

CREATE TABLE heartbeat_days (
    machine_id      TEXT COLLATE "C" NOT NULL,
    day_ms          BIGINT NOT NULL,
    currency        TEXT COLLATE "C" NOT NULL,
    observed_ms     BIGINT NOT NULL,
    idle_ms         BIGINT NOT NULL,
    unknown_ms      BIGINT NOT NULL,
    energy_j        NUMERIC NOT NULL,
    idle_energy_j   NUMERIC NOT NULL,
    cost            NUMERIC NOT NULL,
    idle_cost       NUMERIC NOT NULL,
    co2_g           NUMERIC NOT NULL,
    idle_co2_g      NUMERIC NOT NULL,
    PRIMARY KEY (machine_id, day_ms, currency)
);
CREATE INDEX heartbeat_days_day ON heartbeat_days (day_ms);
