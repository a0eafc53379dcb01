//! Retention and rollups: old raw heartbeats move into hourly, then daily rollups without
//! changing any total — CSV, history (at the rollup's resolution), stats and `/metrics` agree
//! before and after, twice-run and concurrent passes change nothing, and replays of rolled-up
//! heartbeats stay duplicates.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use greenops_collector::store::Role;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::Value;
use time::OffsetDateTime;

use crate::helpers::{TestApp, dec, hb};

const DAY: Duration = Duration::from_secs(86_400);

fn rfc(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Every numeric column of the all-time CSV by machine, summed per currency.
async fn csv_totals(app: &TestApp, token: &str) -> HashMap<String, Decimal> {
    let csv = app
        .call(
            token,
            Method::GET,
            "/api/v1/reports/energy.csv?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
            None,
        )
        .await
        .text()
        .await
        .unwrap();
    let mut lines = csv.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let mut sums = HashMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        for (i, name) in header.iter().enumerate().skip(5) {
            *sums
                .entry(format!("{}:{name}", fields[4]))
                .or_insert(Decimal::ZERO) += dec(fields[i]);
        }
    }
    sums
}

async fn history(
    app: &TestApp,
    token: &str,
    id: &str,
    from: OffsetDateTime,
    days: u64,
    step: u64,
) -> Value {
    let to = from + DAY * days as u32;
    app.call(
        token,
        Method::GET,
        &format!(
            "/api/v1/machines/{id}/history?from={}&to={}&step={step}",
            rfc(from),
            rfc(to)
        ),
        None,
    )
    .await
    .json()
    .await
    .unwrap()
}

fn retention_run(db_url: &str) -> (u64, u64) {
    let out = Command::new(env!("CARGO_BIN_EXE_greenops"))
        .args(["retention", "--database-url", db_url])
        .env_remove("GREENOPS_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let numbers: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[2])
}

fn floor(t: OffsetDateTime, seconds: i64) -> OffsetDateTime {
    let s = t.unix_timestamp();
    OffsetDateTime::from_unix_timestamp(s - s.rem_euclid(seconds)).unwrap()
}

async fn rollups_keep_every_total(app: TestApp) {
    let admin = app.operator("admin", Role::Admin).await;
    let machine = app.new_machine().await;
    let now = OffsetDateTime::now_utc();
    // Three blocks of ten minutes: 500 days ago (→ daily), 45 days ago (→ hourly), recent.
    let blocks = [
        now - DAY * 500,
        now - DAY * 45,
        now - Duration::from_secs(900),
    ];
    let mut seq = 0;
    for start in blocks {
        for minute in 0..10u64 {
            seq += 1;
            let idle = Some(if minute % 3 == 0 {
                0.0
            } else {
                200.0 + 60.0 * minute as f64
            });
            app.send(
                &machine.agent_token,
                &hb(seq, start + Duration::from_secs(60 * minute), idle),
            )
            .await;
        }
    }
    let metrics_before = app.metrics().await;
    let totals_before = app.totals(&machine.machine_id).await;
    assert_eq!(totals_before.heartbeat_rows, 30);
    let csv_before = csv_totals(&app, &admin).await;
    let hourly_from = floor(blocks[1], 3600) - Duration::from_secs(3600);
    let daily_from = floor(blocks[0], 86_400) - DAY;
    let hours_before = history(&app, &admin, &machine.machine_id, hourly_from, 1, 3600).await;
    let days_before = history(&app, &admin, &machine.machine_id, daily_from, 3, 86_400).await;
    let stats_before: Value = app
        .call(&admin, Method::GET, "/api/v1/stats", None)
        .await
        .json()
        .await
        .unwrap();

    // Two passes at once (two processes): rows move exactly once.
    let url = app.db_url.clone();
    let url2 = app.db_url.clone();
    let (a, b) = tokio::join!(
        tokio::task::spawn_blocking(move || retention_run(&url)),
        tokio::task::spawn_blocking(move || retention_run(&url2)),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // 20 raw heartbeats are past 30 days; the 10 that become hourly rows 500 days back then
    // move on to daily rows.
    assert_eq!(a.0 + b.0, 20, "{a:?} {b:?}");
    assert!(a.1 + b.1 >= 1, "{a:?} {b:?}");
    assert_eq!(
        retention_run(&app.db_url),
        (0, 0),
        "a second pass finds nothing"
    );

    let totals_after = app.totals(&machine.machine_id).await;
    assert_eq!(
        totals_after.heartbeat_rows, 10,
        "only the recent raw heartbeats remain"
    );
    assert_eq!(
        (
            totals_after.energy_j,
            totals_after.cost,
            totals_after.idle_ms
        ),
        (
            totals_before.energy_j,
            totals_before.cost,
            totals_before.idle_ms
        )
    );
    assert_eq!(
        app.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("greenops_machine_"))
            .collect::<Vec<_>>(),
        metrics_before
            .lines()
            .filter(|l| l.starts_with("greenops_machine_"))
            .collect::<Vec<_>>()
    );
    assert_eq!(csv_totals(&app, &admin).await, csv_before);
    assert_eq!(
        history(&app, &admin, &machine.machine_id, hourly_from, 1, 3600).await["points"],
        hours_before["points"]
    );
    assert_eq!(
        history(&app, &admin, &machine.machine_id, daily_from, 3, 86_400).await["points"],
        days_before["points"]
    );
    let stats_after: Value = app
        .call(&admin, Method::GET, "/api/v1/stats", None)
        .await
        .json()
        .await
        .unwrap();
    // Equal apart from the moving window starts.
    let without_from = |v: &Value| -> Vec<Value> {
        v["periods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let mut p = p.clone();
                p.as_object_mut().unwrap().remove("from");
                p
            })
            .collect()
    };
    assert_eq!(without_from(&stats_after), without_from(&stats_before));
    let moved: f64 = hours_before["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["observed_seconds"].as_f64().unwrap())
        .sum();
    assert!(moved > 0.0, "the hourly window had observed time");

    // A replay of a rolled-up heartbeat is still a duplicate.
    let replay = app
        .send(
            &machine.agent_token,
            &hb(3, blocks[0] + Duration::from_secs(120), Some(1.0)),
        )
        .await;
    assert_eq!(replay["duplicates"], 1);
    assert_eq!(
        app.totals(&machine.machine_id).await.energy_j,
        totals_before.energy_j
    );
    app.stop().await;
}

on_both_backends!(app: rollups_keep_every_total);
