-- GreenOps schema, PostgreSQL. Times are integer milliseconds since the Unix epoch (UTC);
-- energy, money and CO2 are exact NUMERIC. See DESIGN §2 and §5.

CREATE TABLE sites (
    id                          BIGSERIAL PRIMARY KEY,
    name                        TEXT NOT NULL UNIQUE,
    currency                    TEXT NOT NULL,
    price_per_kwh               NUMERIC NOT NULL CHECK (price_per_kwh >= 0),
    carbon_intensity_g_per_kwh  NUMERIC NOT NULL CHECK (carbon_intensity_g_per_kwh >= 0),
    timezone                    TEXT NOT NULL DEFAULT 'UTC',
    created_at_ms               BIGINT NOT NULL
);

CREATE TABLE power_profiles (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    idle_watts      NUMERIC NOT NULL CHECK (idle_watts >= 0),
    active_watts    NUMERIC NOT NULL CHECK (active_watts >= 0),
    created_at_ms   BIGINT NOT NULL
);

INSERT INTO sites (name, currency, price_per_kwh, carbon_intensity_g_per_kwh, timezone, created_at_ms)
VALUES ('default', 'USD', 0.12, 420, 'UTC', (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT);

INSERT INTO power_profiles (name, idle_watts, active_watts, created_at_ms)
VALUES ('desktop', 65, 120, (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT);

CREATE TABLE enrollment_tokens (
    id              BIGSERIAL PRIMARY KEY,
    token_hash      BYTEA NOT NULL UNIQUE,
    site_id         BIGINT NOT NULL REFERENCES sites (id),
    department      TEXT NOT NULL DEFAULT '',
    expires_at_ms   BIGINT,
    max_uses        BIGINT,
    uses            BIGINT NOT NULL DEFAULT 0,
    revoked_at_ms   BIGINT,
    created_at_ms   BIGINT NOT NULL
);

-- Ids are opaque ASCII: "C" collation makes every comparison a memcmp. Machines and their
-- money totals are updated by every batch: free space per page keeps those updates HOT.
CREATE TABLE machines (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    machine_key         TEXT COLLATE "C" NOT NULL UNIQUE,
    hostname            TEXT NOT NULL,
    os                  TEXT NOT NULL,
    os_version          TEXT NOT NULL,
    agent_version       TEXT NOT NULL,
    mac_addresses       TEXT NOT NULL DEFAULT '[]',
    site_id             BIGINT NOT NULL REFERENCES sites (id),
    department          TEXT NOT NULL DEFAULT '',
    power_profile_id    BIGINT NOT NULL REFERENCES power_profiles (id),
    enrolled_at_ms      BIGINT NOT NULL,
    retired_at_ms       BIGINT,
    -- accounting cursor and last reported state
    last_seq            BIGINT NOT NULL DEFAULT 0,
    last_sent_at_ms     BIGINT,
    last_received_at_ms BIGINT,
    last_idle_ms        BIGINT,
    last_session        TEXT,
    last_cpu_ratio      DOUBLE PRECISION,
    last_memory_ratio   DOUBLE PRECISION,
    last_uptime_seconds BIGINT,
    -- running totals: always the exact sum of the increments in heartbeats
    observed_ms         BIGINT NOT NULL DEFAULT 0,
    idle_ms             BIGINT NOT NULL DEFAULT 0,
    unknown_ms          BIGINT NOT NULL DEFAULT 0,
    energy_j            NUMERIC NOT NULL DEFAULT 0,
    idle_energy_j       NUMERIC NOT NULL DEFAULT 0,
    co2_g               NUMERIC NOT NULL DEFAULT 0,
    idle_co2_g          NUMERIC NOT NULL DEFAULT 0
) WITH (fillfactor = 50);

-- Money totals per currency, so that a site changing currency never mixes amounts.
CREATE TABLE machine_cost_totals (
    machine_id  TEXT COLLATE "C" NOT NULL REFERENCES machines (id),
    currency    TEXT COLLATE "C" NOT NULL,
    cost        NUMERIC NOT NULL DEFAULT 0,
    idle_cost   NUMERIC NOT NULL DEFAULT 0,
    PRIMARY KEY (machine_id, currency)
) WITH (fillfactor = 50);

CREATE TABLE agent_credentials (
    token_hash      BYTEA PRIMARY KEY,
    machine_id      TEXT COLLATE "C" NOT NULL REFERENCES machines (id),
    created_at_ms   BIGINT NOT NULL,
    revoked_at_ms   BIGINT
);
CREATE INDEX agent_credentials_machine ON agent_credentials (machine_id);
-- Collectors poll recent revocations to evict cached credentials.
CREATE INDEX agent_credentials_revoked ON agent_credentials (revoked_at_ms)
    WHERE revoked_at_ms IS NOT NULL;

-- Raw heartbeats with the increments they caused. No foreign key: ingest speed matters and
-- rows are only written by the ingest path after the machine row is locked.
CREATE TABLE heartbeats (
    machine_id          TEXT COLLATE "C" NOT NULL,
    seq                 BIGINT NOT NULL,
    sent_at_ms          BIGINT NOT NULL,
    received_at_ms      BIGINT NOT NULL,
    idle_input_ms       BIGINT,
    session             TEXT NOT NULL,
    cpu_ratio           DOUBLE PRECISION,
    memory_ratio        DOUBLE PRECISION,
    uptime_seconds      BIGINT,
    observed_ms         BIGINT NOT NULL,
    idle_ms             BIGINT NOT NULL,
    unknown_ms          BIGINT NOT NULL,
    energy_j            NUMERIC NOT NULL,
    idle_energy_j       NUMERIC NOT NULL,
    currency            TEXT NOT NULL,
    cost                NUMERIC NOT NULL,
    idle_cost           NUMERIC NOT NULL,
    co2_g               NUMERIC NOT NULL,
    idle_co2_g          NUMERIC NOT NULL,
    PRIMARY KEY (machine_id, seq)
);
-- Heartbeats arrive roughly in time order: a BRIN index serves time-range scans (retention,
-- history) at almost no cost per insert.
CREATE INDEX heartbeats_sent_at ON heartbeats USING brin (sent_at_ms);
