//! History, stats and the CSV report agreeing with the store and `/metrics` (http/reports.rs,
//! http/stats.rs, http/machines.rs).

use std::collections::HashMap;
use std::time::Duration;

use greenops_collector::store::Role;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::helpers::{TestApp, call, dec, enrol, error_of, hb, metric, ok_json, past};

/// Sums a CSV column per currency (exact decimals).
fn csv_sum(csv: &str, column: &str) -> HashMap<String, Decimal> {
    let mut lines = csv.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == column).unwrap();
    let cur = header.iter().position(|h| *h == "currency").unwrap();
    let mut sums = HashMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        *sums.entry(fields[cur].to_string()).or_insert(Decimal::ZERO) += dec(fields[col]);
    }
    sums
}

async fn history_stats_and_csv_agree_with_metrics(app: TestApp) {
    let admin = app.operator("admin", Role::Admin).await;
    let viewer = app.operator("viewer", Role::Viewer).await;
    let (a, agent_a) = enrol(&app, &admin, "default", "finance", "key-a").await;
    let (b, agent_b) = enrol(&app, &admin, "default", "it", "key-b").await;
    let t = past(5);
    // A: 60 s waste then 60 s active (the worked example); B: 60 s idle, unknown, idle.
    for (seq, secs, idle) in [
        (1u64, 0u64, Some(0.0)),
        (2, 60, Some(400.0)),
        (3, 120, Some(10.0)),
    ] {
        app.send(&agent_a, &hb(seq, t + Duration::from_secs(secs), idle))
            .await;
    }
    for (seq, secs, idle) in [
        (1u64, 0u64, Some(900.0)),
        (2, 60, Some(960.0)),
        (3, 120, None),
        (4, 180, Some(1080.0)),
    ] {
        app.send(&agent_b, &hb(seq, t + Duration::from_secs(secs), idle))
            .await;
    }
    let metrics = app.metrics().await;

    // History of A in hourly steps (the resolution of stored usage), over three whole hours
    // around the heartbeats: the steps add up to the machine's totals.
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let start = t - Duration::from_secs(60);
    let start = start.replace_time(time::Time::from_hms(start.hour(), 0, 0).unwrap());
    let from = rfc(start);
    let to = rfc(start + Duration::from_secs(3 * 3600));
    let history = ok_json(
        call(
            &app,
            &viewer,
            Method::GET,
            &format!("/api/v1/machines/{a}/history?from={from}&to={to}&step=3600"),
            None,
        )
        .await,
        200,
    )
    .await;
    let points = history["points"].as_array().unwrap();
    assert_eq!(points.len(), 3);
    let sum = |k: &str| points.iter().map(|p| p[k].as_f64().unwrap()).sum::<f64>();
    assert_eq!(
        (
            sum("observed_seconds"),
            sum("idle_seconds"),
            sum("active_seconds")
        ),
        (120.0, 60.0, 60.0)
    );
    assert_eq!(
        sum("observed_seconds") + sum("unobserved_seconds"),
        10_800.0
    );
    let energy: Decimal = points
        .iter()
        .map(|p| dec(p["energy_joules"].as_str().unwrap()))
        .sum();
    assert_eq!(energy, Decimal::from(11_100));
    for (query, field) in [
        ("?step=1", "step"),
        ("?step=5400", "step"),
        ("?from=yesterday", "from"),
        ("?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("?from=2020-01-01T00:00:00Z&step=3600", "step"),
    ] {
        let (status, _, f) = error_of(
            call(
                &app,
                &viewer,
                Method::GET,
                &format!("/api/v1/machines/{a}/history{query}"),
                None,
            )
            .await,
        )
        .await;
        assert_eq!((status, f.as_deref()), (422, Some(field)), "{query}");
    }
    assert_eq!(
        call(
            &app,
            &viewer,
            Method::GET,
            "/api/v1/machines/nope/history",
            None
        )
        .await
        .status(),
        404
    );

    // CSV for every grouping: the column sums equal the metric totals (and the store's).
    let all_time = "from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z";
    let expected_energy: f64 = [&a, &b]
        .iter()
        .map(|id| metric(&metrics, "greenops_machine_energy_joules_total", id).unwrap())
        .sum();
    let expected_idle_s: f64 = [&a, &b]
        .iter()
        .map(|id| metric(&metrics, "greenops_machine_idle_seconds_total", id).unwrap())
        .sum();
    let store_cost: Decimal = {
        let ta = app.totals(&a).await;
        let tb = app.totals(&b).await;
        ta.cost + tb.cost
    };
    for group in ["machine", "site", "department"] {
        let res = call(
            &app,
            &viewer,
            Method::GET,
            &format!("/api/v1/reports/energy.csv?{all_time}&group_by={group}"),
            None,
        )
        .await;
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let csv = res.text().await.unwrap();
        let energy = csv_sum(&csv, "energy_joules")["USD"];
        assert_eq!(
            energy.to_string().parse::<f64>().unwrap(),
            expected_energy,
            "{group}\n{csv}"
        );
        assert_eq!(
            csv_sum(&csv, "idle_seconds")["USD"]
                .to_string()
                .parse::<f64>()
                .unwrap(),
            expected_idle_s
        );
        assert_eq!(csv_sum(&csv, "cost")["USD"], store_cost, "{group}");
        let rows = csv.split("\r\n").filter(|l| !l.is_empty()).count() - 1;
        assert_eq!(rows, if group == "site" { 1 } else { 2 }, "{csv}");
    }
    let (status, _, field) = error_of(
        call(
            &app,
            &viewer,
            Method::GET,
            "/api/v1/reports/energy.csv?group_by=planet",
            None,
        )
        .await,
    )
    .await;
    assert_eq!((status, field.as_deref()), (422, Some("group_by")));

    // Stats: counts by status and the all-time totals equal the sums of the machines.
    let stats = ok_json(
        call(&app, &viewer, Method::GET, "/api/v1/stats", None).await,
        200,
    )
    .await;
    assert_eq!(stats["machines"]["total"], 2);
    assert_eq!(
        stats["machines"]["active"].as_i64().unwrap() + stats["machines"]["idle"].as_i64().unwrap(),
        2
    );
    let periods: HashMap<&str, &Value> = stats["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["period"].as_str().unwrap(), p))
        .collect();
    for name in ["7d", "30d", "all"] {
        let p = periods[name];
        assert_eq!(
            p["energy_joules"].as_str().unwrap().parse::<f64>().unwrap(),
            expected_energy,
            "{name}"
        );
        assert_eq!(
            p["idle_seconds"].as_f64().unwrap(),
            expected_idle_s,
            "{name}"
        );
        assert_eq!(p["costs"][0]["currency"], "USD");
        assert_eq!(
            dec(p["costs"][0]["cost"].as_str().unwrap()),
            store_cost,
            "{name}"
        );
    }
    assert_eq!(stats["top_wasters"][0]["id"].as_str(), Some(b.as_str()));
    app.stop().await;
}

on_both_backends!(app: history_stats_and_csv_agree_with_metrics);
