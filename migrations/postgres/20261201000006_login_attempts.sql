-- Login rate limiting v2: one counter per key (username or client IP) and fixed window,
-- reserved atomically before a password is checked, so concurrent attempts can never exceed
-- the limit (the old table was read, then written after the check). Usernames are unique
-- regardless of case.

DROP TABLE login_failures;

CREATE TABLE login_attempts (
    key             TEXT PRIMARY KEY,
    window_start_ms BIGINT NOT NULL,
    attempts        BIGINT NOT NULL
);
CREATE INDEX login_attempts_window ON login_attempts (window_start_ms);

CREATE UNIQUE INDEX users_username_lower ON users (LOWER(username));
