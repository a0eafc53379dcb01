//! Agent credential lookup with a short-lived cache, so the hot path rarely asks the store.
//! Revocation takes effect within the cache lifetime (`ingest.credential_cache_seconds`).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use crate::secrets::TokenHash;
use crate::store::{Store, StoreError};

/// Most entries kept; past this the cache starts over (bounded memory under token floods).
const MAX_ENTRIES: usize = 250_000;

#[derive(Debug)]
pub struct CredentialCache {
    ttl: Duration,
    entries: RwLock<HashMap<TokenHash, (Option<String>, Instant)>>,
}

impl CredentialCache {
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
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(machine, _)| machine.clone())
    }
}
