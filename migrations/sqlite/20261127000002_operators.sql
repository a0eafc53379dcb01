-- Operators (admin page and API users) and installation-wide settings.

CREATE TABLE users (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    username            TEXT NOT NULL UNIQUE,
    password_hash       TEXT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    -- Bumped by logout and password changes: tokens carrying an older version are refused.
    session_version     INTEGER NOT NULL DEFAULT 1,
    disabled_at_ms      INTEGER,
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL
);

-- Key/value settings shared by every collector on this database (e.g. the session signing
-- key, generated once).
CREATE TABLE settings (
    key             TEXT PRIMARY KEY,
    value           TEXT NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);
