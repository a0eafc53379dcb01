-- Failed logins, counted per username and per client IP across every collector replica
-- (login rate limiting), and the audit log of operator actions.

CREATE TABLE login_failures (
    key     TEXT NOT NULL,
    at_ms   INTEGER NOT NULL
);
CREATE INDEX login_failures_key_at ON login_failures (key, at_ms);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL DEFAULT '',
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
