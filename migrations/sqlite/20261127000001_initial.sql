-- GreenOps schema, SQLite (the embedded default). Same version numbers as migrations/postgres.
-- Times are INTEGER milliseconds since the Unix epoch (UTC). Energy, money and CO2 are exact
-- decimals stored as TEXT: SQLite has no exact decimal type, so all arithmetic on them happens
-- in the collector (rust_decimal), never in SQL.

CREATE TABLE sites (
    id                          INTEGER PRIMARY KEY AUTOINCREMENT,
    name                        TEXT NOT NULL UNIQUE,
    currency                    TEXT NOT NULL,
    price_per_kwh               TEXT NOT NULL,
    carbon_intensity_g_per_kwh  TEXT NOT NULL,
    timezone                    TEXT NOT NULL DEFAULT 'UTC',
    created_at_ms               INTEGER NOT NULL
);

CREATE TABLE power_profiles (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL UNIQUE,
    idle_watts      TEXT NOT NULL,
    active_watts    TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL
);

INSERT INTO sites (name, currency, price_per_kwh, carbon_intensity_g_per_kwh, timezone, created_at_ms)
VALUES ('default', 'USD', '0.12', '420', 'UTC', CAST(unixepoch('subsec') * 1000 AS INTEGER));

INSERT INTO power_profiles (name, idle_watts, active_watts, created_at_ms)
VALUES ('desktop', '65', '120', CAST(unixepoch('subsec') * 1000 AS INTEGER));

CREATE TABLE enrollment_tokens (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash      BLOB NOT NULL UNIQUE,
    site_id         INTEGER NOT NULL REFERENCES sites (id),
    department      TEXT NOT NULL DEFAULT '',
    expires_at_ms   INTEGER,
    max_uses        INTEGER,
    uses            INTEGER NOT NULL DEFAULT 0,
    revoked_at_ms   INTEGER,
    created_at_ms   INTEGER NOT NULL
);

CREATE TABLE machines (
    id                  TEXT PRIMARY KEY,
    machine_key         TEXT NOT NULL UNIQUE,
    hostname            TEXT NOT NULL,
    os                  TEXT NOT NULL,
    os_version          TEXT NOT NULL,
    agent_version       TEXT NOT NULL,
    mac_addresses       TEXT NOT NULL DEFAULT '[]',
    site_id             INTEGER NOT NULL REFERENCES sites (id),
    department          TEXT NOT NULL DEFAULT '',
    power_profile_id    INTEGER NOT NULL REFERENCES power_profiles (id),
    enrolled_at_ms      INTEGER NOT NULL,
    retired_at_ms       INTEGER,
    last_seq            INTEGER NOT NULL DEFAULT 0,
    last_sent_at_ms     INTEGER,
    last_received_at_ms INTEGER,
    last_idle_ms        INTEGER,
    last_session        TEXT,
    last_cpu_ratio      REAL,
    last_memory_ratio   REAL,
    last_uptime_seconds INTEGER,
    observed_ms         INTEGER NOT NULL DEFAULT 0,
    idle_ms             INTEGER NOT NULL DEFAULT 0,
    unknown_ms          INTEGER NOT NULL DEFAULT 0,
    energy_j            TEXT NOT NULL DEFAULT '0',
    idle_energy_j       TEXT NOT NULL DEFAULT '0',
    co2_g               TEXT NOT NULL DEFAULT '0',
    idle_co2_g          TEXT NOT NULL DEFAULT '0'
);

CREATE TABLE machine_cost_totals (
    machine_id  TEXT NOT NULL REFERENCES machines (id),
    currency    TEXT NOT NULL,
    cost        TEXT NOT NULL DEFAULT '0',
    idle_cost   TEXT NOT NULL DEFAULT '0',
    PRIMARY KEY (machine_id, currency)
);

CREATE TABLE agent_credentials (
    token_hash      BLOB PRIMARY KEY,
    machine_id      TEXT NOT NULL REFERENCES machines (id),
    created_at_ms   INTEGER NOT NULL,
    revoked_at_ms   INTEGER
);
CREATE INDEX agent_credentials_machine ON agent_credentials (machine_id);
-- Collectors poll recent revocations to evict cached credentials.
CREATE INDEX agent_credentials_revoked ON agent_credentials (revoked_at_ms)
    WHERE revoked_at_ms IS NOT NULL;

CREATE TABLE heartbeats (
    machine_id          TEXT NOT NULL,
    seq                 INTEGER NOT NULL,
    sent_at_ms          INTEGER NOT NULL,
    received_at_ms      INTEGER NOT NULL,
    idle_input_ms       INTEGER,
    session             TEXT NOT NULL,
    cpu_ratio           REAL,
    memory_ratio        REAL,
    uptime_seconds      INTEGER,
    observed_ms         INTEGER NOT NULL,
    idle_ms             INTEGER NOT NULL,
    unknown_ms          INTEGER NOT NULL,
    energy_j            TEXT NOT NULL,
    idle_energy_j       TEXT NOT NULL,
    currency            TEXT NOT NULL,
    cost                TEXT NOT NULL,
    idle_cost           TEXT NOT NULL,
    co2_g               TEXT NOT NULL,
    idle_co2_g          TEXT NOT NULL,
    PRIMARY KEY (machine_id, seq)
) WITHOUT ROWID;
CREATE INDEX heartbeats_sent_at ON heartbeats (sent_at_ms);
