//! The retention job (DESIGN §5): raw heartbeats are kept `retention.raw_days`, then deleted
//! (what they added is in the hourly usage rows already); hourly usage rows are kept
//! `retention.hourly_days`, then summed into daily rows kept forever. Every collector runs the
//! job every `retention.interval_seconds`; on PostgreSQL an advisory lock lets one of them move
//! a batch at a time. Reports, history and stats read hourly and daily rows together, so totals
//! never change — only the time resolution of old data does. `greenops retention` runs a pass
//! now.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::settings::RetentionSettings;
use crate::store::retention::Rollup;
use crate::store::{Store, StoreError};

const DAY_MS: i64 = 86_400_000;

/// Rows moved by one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub heartbeats_rolled: u64,
    pub hours_rolled: u64,
}

/// The cutoff of `rollup` at `now_ms`: older rows move, aligned to the coarser bucket.
pub fn cutoff(rollup: Rollup, settings: &RetentionSettings, now_ms: i64) -> i64 {
    let days = match rollup {
        Rollup::ForgetRaw => settings.raw_days,
        Rollup::HoursToDays => settings.hourly_days,
    };
    let at = now_ms.saturating_sub(
        i64::try_from(days)
            .unwrap_or(i64::MAX)
            .saturating_mul(DAY_MS),
    );
    at - at.rem_euclid(rollup.bucket_ms())
}

/// Moves everything past its retention, batch by batch.
pub async fn run_once(
    store: &dyn Store,
    settings: &RetentionSettings,
    now_ms: i64,
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let limit = i64::try_from(settings.batch_rows).unwrap_or(i64::MAX);
    for rollup in [Rollup::ForgetRaw, Rollup::HoursToDays] {
        let before = cutoff(rollup, settings, now_ms);
        loop {
            let batch = store.roll_up(rollup, before, limit).await?;
            match rollup {
                Rollup::ForgetRaw => report.heartbeats_rolled += batch.moved,
                Rollup::HoursToDays => report.hours_rolled += batch.moved,
            }
            if !batch.ran || batch.moved < settings.batch_rows as u64 {
                break;
            }
            tracing::debug!(?rollup, moved = batch.moved, "retention batch");
        }
    }
    Ok(report)
}

/// How often the what-if rollup is brought up to date between what-if questions (each
/// question also brings it up to date first, so this only bounds the work a question waits for).
const SAVINGS_EVERY: Duration = Duration::from_secs(300);

/// How long the fleet change log keeps a change at least (PostgreSQL): a collector that reads
/// the fleet less often than this reads every machine instead of the changed ones.
const FLEET_LOG_KEEP_MS: i64 = 300_000;

/// Runs [`run_once`] a minute after start, then every `interval_seconds`; and brings the
/// what-if rollup up to date and prunes the fleet change log every five minutes.
pub fn spawn(store: Arc<dyn Store>, settings: RetentionSettings) -> JoinHandle<()> {
    tokio::spawn(async move {
        let first = Duration::from_secs(60.min(settings.interval_seconds));
        tokio::time::sleep(first).await;
        let every = Duration::from_secs(settings.interval_seconds);
        let mut retention_due = tokio::time::Instant::now();
        loop {
            let now = crate::clock::now_ms();
            match crate::operations::savings::bring_up_to_date(
                store.as_ref(),
                settings.raw_days,
                now,
            )
            .await
            {
                Ok(c) if c.intervals > 0 => tracing::debug!(
                    intervals = c.intervals,
                    batches = c.batches,
                    "what-if rollup brought up to date"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "what-if rollup failed; retrying later"),
            }
            match store
                .prune_fleet_log(crate::clock::now_ms(), FLEET_LOG_KEEP_MS)
                .await
            {
                Ok(0) => {}
                Ok(rows) => tracing::debug!(rows, "fleet change log pruned"),
                Err(e) => tracing::warn!(error = %e, "pruning the fleet change log failed"),
            }
            if tokio::time::Instant::now() >= retention_due {
                match run_once(store.as_ref(), &settings, crate::clock::now_ms()).await {
                    Ok(r) if r.heartbeats_rolled + r.hours_rolled > 0 => tracing::info!(
                        heartbeats = r.heartbeats_rolled,
                        hours = r.hours_rolled,
                        "retention: old raw heartbeats deleted and old hours rolled up into days"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "retention pass failed; retrying next interval")
                    }
                }
                retention_due = tokio::time::Instant::now() + every;
            }
            tokio::time::sleep(SAVINGS_EVERY.min(every)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_align_to_the_coarser_bucket() {
        let s = RetentionSettings::default();
        let now = 1_800_000_123_456;
        let raw = cutoff(Rollup::ForgetRaw, &s, now);
        assert_eq!(raw.rem_euclid(3_600_000), 0);
        assert!(raw <= now - 30 * DAY_MS && raw > now - 30 * DAY_MS - 3_600_000);
        let hours = cutoff(Rollup::HoursToDays, &s, now);
        assert_eq!(hours.rem_euclid(DAY_MS), 0);
        assert!(hours <= now - 400 * DAY_MS);
    }
}
