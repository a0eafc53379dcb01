//! Accounting thresholds that operators change at runtime (`PATCH /api/v1/settings`).
//!
//! `[accounting]` in the configuration gives the starting values. Once an operator saves
//! settings through the API they are stored in the database (key `accounting`) and win over the
//! configuration on every collector sharing that database: each one polls the stored value, so
//! replicas agree within one poll interval. The threshold and maximum gap are also stored as
//! effective-dated accounting versions: a change applies to time from the moment it is made,
//! whenever the heartbeats covering that time arrive; history is never rewritten.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::settings::AccountingSettings;
use crate::store::{Store, StoreError};

/// The settings key holding the operator's accounting settings (JSON).
pub const SETTINGS_KEY: &str = "accounting";

/// How far back each pass looks for placements that came into force (a later transaction may
/// commit one dated slightly before the previous pass).
const ACTIVATION_SLACK_MS: i64 = 60_000;

/// The accounting settings in force right now.
#[derive(Debug)]
pub struct LiveAccounting {
    current: RwLock<AccountingSettings>,
}

impl LiveAccounting {
    pub fn new(initial: AccountingSettings) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(initial),
        })
    }

    /// A copy of the current settings.
    pub fn get(&self) -> AccountingSettings {
        match self.current.read() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    pub fn set(&self, settings: AccountingSettings) {
        match self.current.write() {
            Ok(mut guard) => *guard = settings,
            Err(poisoned) => *poisoned.into_inner() = settings,
        }
    }

    /// Adopts the stored settings, if an operator saved some. A stored value that no longer
    /// parses or validates is logged and ignored.
    pub async fn refresh(&self, store: &dyn Store) -> Result<(), StoreError> {
        let Some(text) = store.setting(SETTINGS_KEY).await? else {
            return Ok(());
        };
        match serde_json::from_str::<AccountingSettings>(&text) {
            Ok(stored) if stored.check().is_ok() => {
                if stored != self.get() {
                    tracing::info!(settings = ?stored, "accounting settings changed");
                    self.set(stored);
                }
            }
            _ => tracing::warn!("ignoring invalid stored accounting settings"),
        }
        Ok(())
    }

    /// Makes the stored accounting versions (what intervals are priced with, effective-dated)
    /// agree with the settings in force: the first start stores them from the beginning of
    /// time; a threshold or maximum gap changed in the configuration file since (and not
    /// overridden through the API) takes effect from now. Call after [`Self::refresh`].
    pub async fn record_version(&self, store: &dyn Store, now_ms: i64) -> Result<(), StoreError> {
        let book = store.rate_book().await?;
        let current = self.get();
        if book.settings.is_empty() {
            return store
                .add_accounting_version(current.version(i64::MIN), now_ms)
                .await;
        }
        let in_force = book.settings_at(now_ms);
        let wanted = current.version(in_force.effective_from_ms);
        if wanted != in_force {
            tracing::info!(
                idle_threshold_seconds = current.idle_threshold_seconds,
                max_gap_seconds = current.max_gap_seconds,
                "accounting settings changed in the configuration: in force from now"
            );
            store
                .add_accounting_version(current.version(now_ms), now_ms)
                .await?;
        }
        Ok(())
    }

    /// Polls the store every `every` until the task is aborted.
    pub fn watch(self: Arc<Self>, store: Arc<dyn Store>, every: Duration) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Placements scheduled for a later moment become the current ones when it comes
            // (their accounting follows them from that moment regardless; this is what lists
            // and labels show). The first pass catches up with any downtime.
            let mut since = i64::MIN;
            loop {
                tick.tick().await;
                if let Err(e) = self.refresh(store.as_ref()).await {
                    tracing::debug!(error = %e, "could not refresh accounting settings");
                }
                let now = crate::clock::now_ms();
                match store.activate_placements(since, now).await {
                    Ok(0) => since = now.saturating_sub(ACTIVATION_SLACK_MS),
                    Ok(moved) => {
                        tracing::info!(machines = moved, "scheduled placements now in force");
                        since = now.saturating_sub(ACTIVATION_SLACK_MS);
                    }
                    Err(e) => tracing::debug!(error = %e, "could not activate placements"),
                }
            }
        })
    }
}
