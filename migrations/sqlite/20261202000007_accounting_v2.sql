-- Accounting v2 (DESIGN §2), SQLite: the same tables as migrations/postgres (same version);
-- decimals as exact TEXT. Existing data is carried forward by the collector right after this
-- migration (the v1 tables are renamed *_v1 here, converted, then dropped, in one transaction).

CREATE TABLE site_versions (
    site_id                 INTEGER NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    effective_from_ms       INTEGER NOT NULL,
    timezone                TEXT NOT NULL,
    currency                TEXT NOT NULL,
    price_per_kwh           TEXT NOT NULL,
    bands                   TEXT NOT NULL DEFAULT '[]',
    carbon_g_per_kwh        TEXT NOT NULL,
    business_hours          TEXT NOT NULL,
    holidays                TEXT NOT NULL DEFAULT '[]',
    idle_threshold_seconds  INTEGER,
    created_at_ms           INTEGER NOT NULL,
    PRIMARY KEY (site_id, effective_from_ms)
);
INSERT INTO site_versions (site_id, effective_from_ms, timezone, currency, price_per_kwh,
    carbon_g_per_kwh, business_hours, created_at_ms)
SELECT id, -9223372036854775808, timezone, currency, price_per_kwh, carbon_intensity_g_per_kwh,
    '[{"days":["mon","tue","wed","thu","fri"],"start":"08:00","end":"18:00"}]', created_at_ms
FROM sites;
ALTER TABLE sites DROP COLUMN currency;
ALTER TABLE sites DROP COLUMN price_per_kwh;
ALTER TABLE sites DROP COLUMN carbon_intensity_g_per_kwh;
ALTER TABLE sites DROP COLUMN timezone;

CREATE TABLE carbon_intensity_hours (
    site_id         INTEGER NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    hour_ms         INTEGER NOT NULL,
    g_per_kwh       TEXT NOT NULL,
    imported_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (site_id, hour_ms)
) WITHOUT ROWID;

CREATE TABLE profile_versions (
    profile_id          INTEGER NOT NULL REFERENCES power_profiles (id) ON DELETE CASCADE,
    effective_from_ms   INTEGER NOT NULL,
    idle_watts          TEXT NOT NULL,
    active_watts        TEXT NOT NULL,
    sleep_watts         TEXT NOT NULL,
    created_at_ms       INTEGER NOT NULL,
    PRIMARY KEY (profile_id, effective_from_ms)
);
INSERT INTO profile_versions (profile_id, effective_from_ms, idle_watts, active_watts,
    sleep_watts, created_at_ms)
SELECT id, -9223372036854775808, idle_watts, active_watts, '2', created_at_ms FROM power_profiles;
ALTER TABLE power_profiles DROP COLUMN idle_watts;
ALTER TABLE power_profiles DROP COLUMN active_watts;

CREATE TABLE machine_placements (
    machine_id          TEXT NOT NULL REFERENCES machines (id),
    effective_from_ms   INTEGER NOT NULL,
    site_id             INTEGER NOT NULL REFERENCES sites (id),
    department          TEXT NOT NULL,
    power_profile_id    INTEGER NOT NULL REFERENCES power_profiles (id),
    created_at_ms       INTEGER NOT NULL,
    PRIMARY KEY (machine_id, effective_from_ms)
);
CREATE INDEX machine_placements_site ON machine_placements (site_id);
CREATE INDEX machine_placements_profile ON machine_placements (power_profile_id);
CREATE INDEX machine_placements_from ON machine_placements (effective_from_ms);
INSERT INTO machine_placements (machine_id, effective_from_ms, site_id, department,
    power_profile_id, created_at_ms)
SELECT id, -9223372036854775808, site_id, department, power_profile_id, enrolled_at_ms
FROM machines;
ALTER TABLE machines ADD COLUMN placed_from_ms INTEGER NOT NULL DEFAULT -9223372036854775808;
ALTER TABLE machines ADD COLUMN num INTEGER;
UPDATE machines SET num = rowid;
CREATE UNIQUE INDEX machines_num ON machines (num);

CREATE TABLE accounting_versions (
    effective_from_ms       INTEGER PRIMARY KEY,
    idle_threshold_seconds  INTEGER NOT NULL,
    max_gap_seconds         INTEGER NOT NULL,
    created_at_ms           INTEGER NOT NULL
);

CREATE TABLE rates_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO rates_version (id, version) VALUES (1, 1);

ALTER TABLE heartbeats RENAME TO heartbeats_v1;
DROP INDEX heartbeats_sent_at;
CREATE TABLE heartbeats (
    sent_at_ms  INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    machine     INTEGER NOT NULL,
    idle_ms     INTEGER,
    observed_ms INTEGER NOT NULL,
    state       INTEGER NOT NULL
);
CREATE INDEX heartbeats_sent_at ON heartbeats (sent_at_ms);

ALTER TABLE heartbeat_hours RENAME TO heartbeat_hours_v1;
ALTER TABLE heartbeat_days RENAME TO heartbeat_days_v1;
DROP INDEX heartbeat_hours_hour;
DROP INDEX heartbeat_days_day;
CREATE TABLE usage_hours (
    machine                     INTEGER NOT NULL,
    hour_ms                     INTEGER NOT NULL,
    site_id                     INTEGER NOT NULL,
    department                  TEXT NOT NULL,
    profile_id                  INTEGER NOT NULL,
    currency                    TEXT NOT NULL,
    observed_ms                 INTEGER NOT NULL DEFAULT 0,
    idle_ms                     INTEGER NOT NULL DEFAULT 0,
    unknown_ms                  INTEGER NOT NULL DEFAULT 0,
    after_hours_idle_ms         INTEGER NOT NULL DEFAULT 0,
    gap_ms                      INTEGER NOT NULL DEFAULT 0,
    energy_j                    TEXT NOT NULL DEFAULT '0',
    idle_energy_j               TEXT NOT NULL DEFAULT '0',
    avoidable_energy_j          TEXT NOT NULL DEFAULT '0',
    after_hours_idle_energy_j   TEXT NOT NULL DEFAULT '0',
    cost                        TEXT NOT NULL DEFAULT '0',
    idle_cost                   TEXT NOT NULL DEFAULT '0',
    avoidable_cost              TEXT NOT NULL DEFAULT '0',
    co2_g                       TEXT NOT NULL DEFAULT '0',
    idle_co2_g                  TEXT NOT NULL DEFAULT '0',
    avoidable_co2_g             TEXT NOT NULL DEFAULT '0',
    PRIMARY KEY (machine, hour_ms, site_id, department, profile_id, currency)
) WITHOUT ROWID;
CREATE INDEX usage_hours_hour ON usage_hours (hour_ms);
CREATE TABLE usage_days (
    machine                     INTEGER NOT NULL,
    day_ms                      INTEGER NOT NULL,
    site_id                     INTEGER NOT NULL,
    department                  TEXT NOT NULL,
    profile_id                  INTEGER NOT NULL,
    currency                    TEXT NOT NULL,
    observed_ms                 INTEGER NOT NULL DEFAULT 0,
    idle_ms                     INTEGER NOT NULL DEFAULT 0,
    unknown_ms                  INTEGER NOT NULL DEFAULT 0,
    after_hours_idle_ms         INTEGER NOT NULL DEFAULT 0,
    gap_ms                      INTEGER NOT NULL DEFAULT 0,
    energy_j                    TEXT NOT NULL DEFAULT '0',
    idle_energy_j               TEXT NOT NULL DEFAULT '0',
    avoidable_energy_j          TEXT NOT NULL DEFAULT '0',
    after_hours_idle_energy_j   TEXT NOT NULL DEFAULT '0',
    cost                        TEXT NOT NULL DEFAULT '0',
    idle_cost                   TEXT NOT NULL DEFAULT '0',
    avoidable_cost              TEXT NOT NULL DEFAULT '0',
    co2_g                       TEXT NOT NULL DEFAULT '0',
    idle_co2_g                  TEXT NOT NULL DEFAULT '0',
    avoidable_co2_g             TEXT NOT NULL DEFAULT '0',
    PRIMARY KEY (machine, day_ms, site_id, department, profile_id, currency)
) WITHOUT ROWID;
CREATE INDEX usage_days_day ON usage_days (day_ms);

ALTER TABLE machine_cost_totals RENAME TO machine_cost_totals_v1;
CREATE TABLE machine_totals (
    machine_id                  TEXT NOT NULL REFERENCES machines (id),
    site_id                     INTEGER NOT NULL,
    department                  TEXT NOT NULL,
    currency                    TEXT NOT NULL,
    observed_ms                 INTEGER NOT NULL DEFAULT 0,
    idle_ms                     INTEGER NOT NULL DEFAULT 0,
    unknown_ms                  INTEGER NOT NULL DEFAULT 0,
    after_hours_idle_ms         INTEGER NOT NULL DEFAULT 0,
    gap_ms                      INTEGER NOT NULL DEFAULT 0,
    energy_j                    TEXT NOT NULL DEFAULT '0',
    idle_energy_j               TEXT NOT NULL DEFAULT '0',
    avoidable_energy_j          TEXT NOT NULL DEFAULT '0',
    after_hours_idle_energy_j   TEXT NOT NULL DEFAULT '0',
    cost                        TEXT NOT NULL DEFAULT '0',
    idle_cost                   TEXT NOT NULL DEFAULT '0',
    avoidable_cost              TEXT NOT NULL DEFAULT '0',
    co2_g                       TEXT NOT NULL DEFAULT '0',
    idle_co2_g                  TEXT NOT NULL DEFAULT '0',
    avoidable_co2_g             TEXT NOT NULL DEFAULT '0',
    PRIMARY KEY (machine_id, site_id, department, currency)
) WITHOUT ROWID;
ALTER TABLE machines DROP COLUMN observed_ms;
ALTER TABLE machines DROP COLUMN idle_ms;
ALTER TABLE machines DROP COLUMN unknown_ms;
ALTER TABLE machines DROP COLUMN energy_j;
ALTER TABLE machines DROP COLUMN idle_energy_j;
ALTER TABLE machines DROP COLUMN co2_g;
ALTER TABLE machines DROP COLUMN idle_co2_g;

-- The collector carries the v1 rows forward at start while this is set (store/common/upgrade.rs).
INSERT INTO settings (key, value, updated_at_ms) VALUES ('v1_data_pending', 'yes', 0);
