//! An installation made by the last version-1 collector (`tests/fixtures/v1`, built by
//! `scripts/make-v1-fixture.sh`: two sites in two currencies, two power profiles, a machine
//! moved halfway, a retired one whose 45-day-old heartbeats are already in hourly rollups) is upgraded
//! in place on both backends, and every figure it showed is still there, to the last digit.

use std::collections::BTreeSet;
use std::path::Path;

use greenops_collector::store::Role;
use reqwest::Method;
use rust_decimal::Decimal;

use crate::helpers::{Db, call, dec, fresh_database_of, ok_json, spawn_app_with, test_settings};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v1")
        .join(name)
}

/// A database holding the version-1 installation.
async fn v1_database(db: Db) -> Option<String> {
    let url = fresh_database_of(db).await?;
    match db {
        Db::Sqlite => {
            let path = greenops_collector::store::sqlite_path(&url);
            std::fs::copy(fixture("greenops.db"), path).unwrap();
        }
        Db::Postgres => {
            use sqlx::Connection;
            // pg_dump's output without its psql meta-commands (`\restrict`).
            let dump: String = std::fs::read_to_string(fixture("postgres.sql"))
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with('\\'))
                .collect::<Vec<_>>()
                .join("\n");
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(dump))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.ok();
        }
    }
    Some(url)
}

async fn an_upgrade_carries_every_figure_forward(db: Db) {
    let Some(url) = v1_database(db).await else {
        return;
    };
    let app = spawn_app_with(test_settings(&url)).await;
    let text = app.metrics().await;
    // Every per-machine counter the old collector exposed, with the same labels and value.
    let expected: BTreeSet<String> = std::fs::read_to_string(fixture("metrics.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let families: BTreeSet<&str> = expected
        .iter()
        .filter_map(|l| l.split('{').next())
        .collect();
    let got: BTreeSet<String> = text
        .lines()
        .filter(|l| l.split('{').next().is_some_and(|f| families.contains(f)))
        .map(String::from)
        .collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:#?}\nextra {extra:#?}"
    );

    // The report, attributed as incurred, still adds up to the same all-time totals — now with
    // the retired machine's history too — and every increment kept its currency.
    let admin = app.operator("auditor", Role::Viewer).await;
    let csv = call(
        &app,
        &admin,
        Method::GET,
        "/api/v1/reports/energy.csv?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&group_by=machine",
        None,
    )
    .await
    .text()
    .await
    .unwrap();
    let mut lines = csv.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (energy, cost, currency) = (col("energy_joules"), col("cost"), col("currency"));
    let mut report_energy = Decimal::ZERO;
    let mut currencies = BTreeSet::new();
    let mut report_cost_usd = Decimal::ZERO;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        report_energy += dec(f[energy]);
        currencies.insert(f[currency].to_string());
        if f[currency] == "USD" {
            report_cost_usd += dec(f[cost]);
        }
    }
    assert_eq!(
        currencies,
        BTreeSet::from(["JPY".to_string(), "USD".to_string()])
    );
    let metric_sum = |family: &str, filter: &str| -> f64 {
        expected
            .iter()
            .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let live_energy = metric_sum("greenops_machine_energy_joules_total", "");
    let live_cost_usd = metric_sum("greenops_machine_energy_cost_total", "currency=\"USD\"");
    let f = |d: Decimal| d.to_string().parse::<f64>().unwrap();
    assert!(
        f(report_energy) > live_energy,
        "the retired machine's history is back in the report: {report_energy} vs {live_energy}"
    );
    assert!(f(report_cost_usd) >= live_cost_usd);
    // The stats agree with the report.
    let all = crate::helpers::stats_period(&app, &admin, "all").await;
    assert_eq!(dec(all["energy_joules"].as_str().unwrap()), report_energy);

    // Sites and profiles kept their figures as their first version.
    let sites = ok_json(
        call(&app, &admin, Method::GET, "/api/v1/sites", None).await,
        200,
    )
    .await;
    let tokyo = sites["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "tokyo")
        .unwrap()
        .clone();
    assert_eq!(
        (
            tokyo["currency"].as_str(),
            tokyo["price_per_kwh"].as_str(),
            tokyo["timezone"].as_str()
        ),
        (Some("JPY"), Some("31"), Some("Asia/Tokyo"))
    );
    let profiles = ok_json(
        call(&app, &admin, Method::GET, "/api/v1/power-profiles", None).await,
        200,
    )
    .await;
    let laptop = profiles["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "laptop")
        .unwrap()
        .clone();
    assert_eq!(
        (
            laptop["idle_watts"].as_str(),
            laptop["sleep_watts"].as_str()
        ),
        (Some("8.5"), Some("2"))
    );
    app.stop().await;

    // A second start finds nothing left to convert and changes nothing.
    let again = spawn_app_with(test_settings(&url)).await;
    let text_again = again.metrics().await;
    let counters = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("greenops_machine_") && l.contains("_total{"))
            .map(String::from)
            .collect()
    };
    assert_eq!(counters(&text_again), counters(&text));
    again.stop().await;
}

on_both_backends!(an_upgrade_carries_every_figure_forward);
