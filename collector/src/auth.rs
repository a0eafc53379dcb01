//! Operator authentication (DESIGN §6): Argon2id password hashes and signed session tokens.
//!
//! Passwords are hashed with Argon2id at the OWASP minimum parameters (19 MiB memory, 2
//! iterations, 1 lane). Every hash and verification of a network request runs on the bounded
//! [`PasswordPool`]: a few dedicated threads, each reusing one Argon2 memory buffer, behind a
//! short queue — so a flood of sign-ins costs a fixed amount of memory and CPU, and what does
//! not fit in the queue is refused at once instead of piling up. Sessions are HS256 tokens signed with a key generated once and kept in
//! the database (`settings.session_signing_key`), so every replica accepts every session and
//! a restart never logs anyone out. Each token carries the user's `session_version`;
//! logout, a password change or disabling the account bump it, revoking every older token.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::secrets;
use crate::store::{Role, Store, StoreError, User};

/// Lifetime of a session token.
pub const SESSION_SECONDS: i64 = 12 * 3600;
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Name of the session cookie.
pub const COOKIE: &str = "greenops_session";

fn hasher() -> Argon2<'static> {
    // OWASP minimum for Argon2id: m = 19 MiB, t = 2, p = 1.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A PHC-format Argon2id hash of `password` with a random salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    Ok(hasher()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
        .to_string())
}

/// Largest Argon2 memory cost (KiB) a stored hash may ask for when it is verified: 256 MiB.
const MAX_VERIFY_MEMORY_KIB: u32 = 256 * 1024;

/// Whether `password` matches the stored PHC hash (any Argon2 variant and parameters up to
/// [`MAX_VERIFY_MEMORY_KIB`]), computing into `memory` (grown as needed, then reused) and
/// comparing in constant time.
pub fn verify_password_with(memory: &mut Vec<Block>, hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    if params.m_cost() > MAX_VERIFY_MEMORY_KIB {
        return false;
    }
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt.as_ref(),
        &mut out,
        &mut memory[..blocks],
    );
    computed.is_ok() && constant_time_eq(&out, expected.as_bytes())
}

/// Whether `password` matches the stored hash (allocates its own memory: for the CLI and tests).
pub fn verify_password(hash: &str, password: &str) -> bool {
    verify_password_with(&mut Vec::new(), hash, password)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// The pool is full: too many hashes or verifications are waiting already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many sign-ins at once; retry in a second")]
pub struct PoolBusy;

enum PasswordJob {
    Verify {
        hash: String,
        password: String,
        reply: tokio::sync::oneshot::Sender<bool>,
    },
    Hash {
        password: String,
        reply: tokio::sync::oneshot::Sender<anyhow::Result<String>>,
    },
}

/// A few threads that do all Argon2 work of network requests (see the module docs).
#[derive(Debug)]
pub struct PasswordPool {
    jobs: SyncSender<PasswordJob>,
    workers: usize,
}

impl PasswordPool {
    /// Starts `workers` threads (0: half the cores, at least one) behind a queue of `queue`
    /// jobs (0: eight per worker). The threads stop when the pool is dropped.
    pub fn new(workers: usize, queue: usize) -> Arc<Self> {
        Arc::new(Self::start(workers, queue))
    }

    fn start(workers: usize, queue: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let workers = if workers == 0 {
            (cores / 2).max(1)
        } else {
            workers
        };
        let queue = if queue == 0 { 8 * workers } else { queue };
        let (jobs, rx) = std::sync::mpsc::sync_channel(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || Self::work(&rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password thread");
            }
        }
        Self { jobs, workers }
    }

    fn work(rx: &Mutex<Receiver<PasswordJob>>) {
        // One Argon2 buffer per thread for its whole life: memory stays bounded and is never
        // handed back and forth to the allocator.
        let mut memory: Vec<Block> = Vec::new();
        loop {
            let job = match rx.lock() {
                Ok(rx) => rx.recv(),
                Err(poisoned) => poisoned.into_inner().recv(),
            };
            match job {
                Ok(PasswordJob::Verify {
                    hash,
                    password,
                    reply,
                }) => {
                    let _ = reply.send(verify_password_with(&mut memory, &hash, &password));
                }
                Ok(PasswordJob::Hash { password, reply }) => {
                    let _ = reply.send(hash_password(&password));
                }
                Err(_) => return,
            }
        }
    }

    /// Worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Verifies on the pool; [`PoolBusy`] at once when its queue is full.
    pub async fn verify(&self, hash: String, password: String) -> Result<bool, PoolBusy> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .try_send(PasswordJob::Verify {
                hash,
                password,
                reply,
            })
            .map_err(|_| PoolBusy)?;
        answer.await.map_err(|_| PoolBusy)
    }

    /// Hashes on the pool, waiting for room in its queue (operator actions, never floods).
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let mut job = PasswordJob::Hash { password, reply };
        loop {
            match self.jobs.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    job = back;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(TrySendError::Disconnected(_)) => anyhow::bail!("the password pool stopped"),
            }
        }
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the password pool stopped"))?
    }
}

/// Why a password cannot be used.
pub fn check_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(format!(
            "must be at least {MIN_PASSWORD_CHARS} characters long"
        ));
    }
    if n > 1024 {
        return Err("must be at most 1024 characters long".into());
    }
    Ok(())
}

/// Checks a username: 1–64 characters of letters, digits, `.`, `_`, `-`, `@`.
pub fn check_username(username: &str) -> Result<(), String> {
    let ok_chars = username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if username.is_empty() || username.chars().count() > 64 || !ok_chars {
        return Err("must be 1 to 64 characters: letters, digits, '.', '_', '-', '@'".into());
    }
    Ok(())
}

/// A generated password for the bootstrap admin: 24 characters from 144 random bits.
pub fn generate_password() -> String {
    secrets::generate_token("")[..24].to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub ver: i64,
    pub iat: i64,
    pub exp: i64,
}

/// The signing and verification keys of session tokens.
#[derive(Clone)]
pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

impl SessionKeys {
    /// The installation's key: read from the store, generated there on first use.
    pub async fn load(store: &dyn Store) -> Result<Self, StoreError> {
        let fresh = STANDARD.encode(secrets::generate_token("").as_bytes());
        let stored = store
            .setting_or_insert("session_signing_key", &fresh, crate::clock::now_ms())
            .await?;
        let key = STANDARD
            .decode(stored.as_bytes())
            .unwrap_or_else(|_| stored.into_bytes());
        Ok(Self::from_secret(&key))
    }

    pub fn from_secret(key: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
        }
    }

    /// A session token for `user`, and when it expires (Unix seconds).
    pub fn issue(&self, user: &User, now_s: i64) -> anyhow::Result<(String, i64)> {
        let claims = Claims {
            sub: user.username.clone(),
            role: user.role,
            ver: user.session_version,
            iat: now_s,
            exp: now_s + SESSION_SECONDS,
        };
        let token = jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)?;
        Ok((token, claims.exp))
    }

    /// The claims of a well-signed, unexpired token.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let validation = Validation {
            leeway: 0,
            ..Validation::default()
        };
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(version: i64) -> User {
        User {
            id: 1,
            username: "alice".into(),
            role: Role::Admin,
            password_hash: String::new(),
            session_version: version,
            disabled: false,
        }
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse battery!"));
        assert!(!verify_password("not a hash", "x"));
        assert_ne!(
            hash,
            hash_password("correct horse battery").unwrap(),
            "salted"
        );
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering_and_other_keys() {
        let keys = SessionKeys::from_secret(b"0123456789abcdef0123456789abcdef");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (token, exp) = keys.issue(&user(3), now).unwrap();
        assert_eq!(exp, now + SESSION_SECONDS);
        let claims = keys.verify(&token).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.role, claims.ver),
            ("alice", Role::Admin, 3)
        );
        let other = SessionKeys::from_secret(b"another key, another installation!");
        assert!(other.verify(&token).is_none());
        let mut tampered = token.clone();
        tampered.pop();
        assert!(keys.verify(&tampered).is_none());
        let (old, _) = keys.issue(&user(3), now - SESSION_SECONDS - 10).unwrap();
        assert!(keys.verify(&old).is_none(), "expired");
    }

    #[test]
    fn weak_passwords_and_odd_names_are_refused() {
        assert!(check_password("short").is_err());
        assert!(check_password("twelve chars").is_ok());
        assert!(check_username("alice@example.org").is_ok());
        assert!(check_username("a b").is_err() && check_username("").is_err());
        assert_eq!(generate_password().len(), 24);
    }
}
