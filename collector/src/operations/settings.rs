//! The accounting settings in force, changed at runtime: stored in the database and adopted
//! by every collector sharing it within one poll interval (see `crate::live`).

use super::{Ctx, OpError, invalid};
use crate::live::{LiveAccounting, SETTINGS_KEY};
use crate::settings::AccountingSettings;

/// Changes to the accounting settings; `None` keeps the current value.
#[derive(Debug, Default, Clone, Copy)]
pub struct SettingsPatch {
    pub idle_threshold_seconds: Option<u64>,
    pub max_gap_seconds: Option<u64>,
    pub max_clock_skew_seconds: Option<u64>,
    pub offline_after_seconds: Option<u64>,
    pub heartbeat_interval_seconds: Option<u64>,
}

/// Whether the settings in force were saved by an operator (`database`) or come from the
/// configuration (`config`).
pub async fn source(ctx: Ctx<'_>) -> Result<&'static str, OpError> {
    let stored = ctx.store.setting(SETTINGS_KEY).await?.is_some();
    Ok(if stored { "database" } else { "config" })
}

/// Saves new accounting settings for every collector on this database: before and after.
pub async fn update(
    ctx: Ctx<'_>,
    live: &LiveAccounting,
    patch: SettingsPatch,
) -> Result<(AccountingSettings, AccountingSettings), OpError> {
    // Start from what is stored, so a replica that has not polled yet cannot undo a change.
    live.refresh(ctx.store).await?;
    let before = live.get();
    let after = AccountingSettings {
        idle_threshold_seconds: patch
            .idle_threshold_seconds
            .unwrap_or(before.idle_threshold_seconds),
        max_gap_seconds: patch.max_gap_seconds.unwrap_or(before.max_gap_seconds),
        max_clock_skew_seconds: patch
            .max_clock_skew_seconds
            .unwrap_or(before.max_clock_skew_seconds),
        offline_after_seconds: patch
            .offline_after_seconds
            .unwrap_or(before.offline_after_seconds),
        heartbeat_interval_seconds: patch
            .heartbeat_interval_seconds
            .unwrap_or(before.heartbeat_interval_seconds),
    };
    after.check().map_err(|(field, why)| invalid(field, why))?;
    let json = serde_json::to_string(&after).map_err(|e| OpError::Internal(e.into()))?;
    let now = crate::clock::now_ms();
    if after.version(now) != before.version(now) {
        // What an interval is changes from now on; time already incurred keeps its rules,
        // even when its heartbeats arrive later.
        ctx.store
            .add_accounting_version(after.version(now), now)
            .await?;
    }
    ctx.store.put_setting(SETTINGS_KEY, &json, now).await?;
    live.set(after);
    ctx.audit(
        "settings_updated",
        SETTINGS_KEY,
        serde_json::json!({"before": before, "after": after}),
    )
    .await?;
    tracing::info!(by = %crate::telemetry::untrusted(ctx.actor), settings = ?after, "accounting settings changed");
    Ok((before, after))
}
