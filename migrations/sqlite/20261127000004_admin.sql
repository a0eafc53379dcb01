-- Personal API tokens (bearer tokens carrying an operator's role; stored as SHA-256, shown
-- once) and indexes for the admin page's machines list.

CREATE TABLE api_tokens (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash      BLOB NOT NULL UNIQUE,
    user_id         INTEGER NOT NULL REFERENCES users (id),
    name            TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    revoked_at_ms   INTEGER
);

CREATE INDEX machines_live_hostname ON machines (hostname, id) WHERE retired_at_ms IS NULL;
CREATE INDEX machines_site ON machines (site_id);
CREATE INDEX machines_power_profile ON machines (power_profile_id);
