//! Agent credential lookup with a cache, so the hot path rarely asks the store.
//!
//! Verified credentials are trusted for `ingest.credential_cache_seconds` (default 10 min: a
//! machine heartbeats every minute, so a short cache would miss every time). Revocation still
//! takes effect within seconds: a watcher polls the store for credentials revoked recently
//! (by any collector sharing the database) and evicts them. Unknown tokens are cached briefly
//! too, so a flood of bad tokens does not become a flood of queries.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::clock;
use crate::secrets::TokenHash;
use crate::store::{Store, StoreError};

/// Most entries kept; past this the cache starts over (bounded memory under token floods).
const MAX_ENTRIES: usize = 1_000_000;
/// Unknown tokens are remembered at most this long.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Revocations are looked up with this much overlap, for clock differences between replicas.
const REVOCATION_OVERLAP_MS: i64 = 60_000;

#[derive(Debug)]
pub struct CredentialCache {
    ttl: Duration,
    entries: RwLock<HashMap<TokenHash, (Option<String>, Instant)>>,
}

impl CredentialCache {
    /// A cache trusting verified credentials for `ttl` (zero turns caching off).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The machine that `token` authenticates, if any.
    pub async fn machine_for(
        &self,
        store: &dyn Store,
        token: &str,
    ) -> Result<Option<String>, StoreError> {
        let hash = TokenHash::of(token);
        if let Some(hit) = self.cached(&hash) {
            return Ok(hit);
        }
        let machine = store.machine_for_credential(&hash).await?;
        if !self.ttl.is_zero() {
            let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(hash, (machine.clone(), Instant::now()));
        }
        Ok(machine)
    }

    fn cached(&self, hash: &TokenHash) -> Option<Option<String>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let (machine, at) = entries.get(hash)?;
        let ttl = if machine.is_some() {
            self.ttl
        } else {
            NEGATIVE_TTL.min(self.ttl)
        };
        (at.elapsed() < ttl).then(|| machine.clone())
    }

    /// Forgets the given credentials.
    pub fn evict(&self, hashes: &[TokenHash]) {
        if hashes.is_empty() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        for h in hashes {
            entries.remove(h);
        }
    }

    /// Polls the store every `every` for revoked credentials and evicts them.
    pub fn watch_revocations(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
        every: Duration,
    ) -> JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut since = clock::now_ms() - REVOCATION_OVERLAP_MS;
            let mut ticker = tokio::time::interval(every.max(Duration::from_millis(100)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let now = clock::now_ms();
                match store.revoked_credentials_since(since).await {
                    Ok(revoked) => {
                        cache.evict(&revoked);
                        since = now - REVOCATION_OVERLAP_MS;
                    }
                    Err(e) => tracing::debug!(error = %e, "revocation poll failed; will retry"),
                }
            }
        })
    }
}
