//! Accounting thresholds that operators change at runtime (`PATCH /api/v1/settings`).
//!
//! `[accounting]` in the configuration gives the starting values. Once an operator saves
//! settings through the API they are stored in the database (key `accounting`) and win over the
//! configuration on every collector sharing that database: each one polls the stored value, so
//! replicas agree within one poll interval. Changes apply to heartbeats accounted afterwards;
//! history is never rewritten.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::settings::AccountingSettings;
use crate::store::{Store, StoreError};

/// The settings key holding the operator's accounting settings (JSON).
pub const SETTINGS_KEY: &str = "accounting";

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

    /// Polls the store every `every` until the task is aborted.
    pub fn watch(self: Arc<Self>, store: Arc<dyn Store>, every: Duration) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.refresh(store.as_ref()).await {
                    tracing::debug!(error = %e, "could not refresh accounting settings");
                }
            }
        })
    }
}
