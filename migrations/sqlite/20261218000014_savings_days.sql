-- The what-if rollup per UTC day as well as per hour: a window reads the days wholly inside it
-- from these rows and only its edge hours from savings_hours / savings_reach, so a week of a
-- large fleet costs about what two days do. Same columns, same meaning, day_ms instead of
-- hour_ms (the start of the UTC day).
CREATE TABLE savings_days (
    day_ms      BIGINT NOT NULL,
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
    PRIMARY KEY (day_ms, site_id, department, currency, after_hours, kind, n)
);

CREATE TABLE savings_reach_days (
    day_ms      BIGINT NOT NULL,
    machine     BIGINT NOT NULL,
    site_id     BIGINT NOT NULL,
    department  TEXT NOT NULL,
    reach       BIGINT NOT NULL,
    after_hours BIGINT NOT NULL,
    PRIMARY KEY (day_ms, machine, site_id, department)
);

-- The daily rows are built from the raw heartbeats like the hourly ones: the rollup starts
-- again (the collector rebuilds it in the background, and before the next what-if).
DELETE FROM savings_hours;
DELETE FROM savings_reach;
DELETE FROM savings_cursors;
