//! `GET /api/v1/savings/what-if` (http/savings.rs): at the idle threshold it agrees with the
//! stored avoidable and after-hours figures (CSV and `/metrics`) to the last digit, a scope
//! selects what was incurred there, a later limit saves less, and bad questions get 422s.

use std::collections::HashMap;
use std::time::Duration;

use greenops_collector::store::Role;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::helpers::{TestApp, call, dec, enrol, error_of, hb, metric, ok_json, past};

/// The rows of a CSV report, each as column → value.
fn csv_rows(csv: &str) -> Vec<HashMap<String, String>> {
    let mut lines = csv.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}

fn sum(rows: &[HashMap<String, String>], column: &str) -> Decimal {
    rows.iter().map(|r| dec(&r[column])).sum()
}

fn rfc(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn what_if(app: &TestApp, who: &str, query: &str) -> Value {
    ok_json(
        call(
            app,
            who,
            Method::GET,
            &format!("/api/v1/savings/what-if?{query}"),
            None,
        )
        .await,
        200,
    )
    .await
}

async fn what_if_agrees_with_the_stored_figures(app: TestApp) {
    let admin = app.operator("admin", Role::Admin).await;
    let viewer = app.operator("viewer", Role::Viewer).await;
    let (a, agent_a) = enrol(&app, &admin, "default", "finance", "save-a").await;
    let (b, agent_b) = enrol(&app, &admin, "default", "it", "save-b").await;
    let t = past(40);
    // A: idle from the start for 20 minutes. B: idle 10 minutes, input, idle 8 minutes.
    for i in 0..=20u64 {
        app.send(
            &agent_a,
            &hb(
                i + 1,
                t + Duration::from_secs(60 * i),
                Some(60.0 * i as f64),
            ),
        )
        .await;
        let idle = if i <= 10 { i } else { i - 11 };
        app.send(
            &agent_b,
            &hb(
                i + 1,
                t + Duration::from_secs(60 * i),
                Some(60.0 * idle as f64),
            ),
        )
        .await;
    }
    let from = rfc(t - Duration::from_secs(3600));
    let to = rfc(past(0));
    let window = format!("from={from}&to={to}");
    let csv = |group: &'static str| {
        let url = format!("/api/v1/reports/energy.csv?group_by={group}&{window}");
        let app = &app;
        let admin = admin.clone();
        async move {
            call(app, &admin, Method::GET, &url, None)
                .await
                .text()
                .await
                .unwrap()
        }
    };
    let rows = csv_rows(&csv("machine").await);
    assert_eq!(rows.len(), 2, "{rows:?}");

    // At the threshold (5 min, the default), always: the stored avoidable figures exactly.
    let at = what_if(&app, &viewer, &format!("sleep_after_minutes=5&{window}")).await;
    assert_eq!(
        dec(at["energy_joules"].as_str().unwrap()),
        sum(&rows, "avoidable_energy_joules")
    );
    assert_eq!(
        dec(at["costs"]["USD"].as_str().unwrap()),
        sum(&rows, "avoidable_cost")
    );
    assert_eq!(
        dec(at["co2_grams"].as_str().unwrap()),
        sum(&rows, "avoidable_co2_grams")
    );
    assert_eq!(
        dec(at["slept_seconds"].as_str().unwrap()),
        sum(&rows, "idle_seconds")
    );
    // A slept once (minutes 5–20), B twice (5–10 and, after input at 11, 16–20).
    assert_eq!(
        (at["machines_affected"].as_u64(), at["sleeps"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(at["machines_considered"], 2);
    let metrics = app.metrics().await;
    let scraped: f64 = [&a, &b]
        .iter()
        .map(|m| {
            metric(
                &metrics,
                "greenops_machine_avoidable_energy_joules_total",
                m,
            )
            .unwrap()
        })
        .sum();
    assert_eq!(
        scraped,
        at["energy_joules"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    );

    // The overview's stats and daily series say the same.
    let all = crate::helpers::stats_period(&app, &viewer, "all").await;
    assert_eq!(
        dec(all["avoidable_energy_joules"].as_str().unwrap()),
        sum(&rows, "avoidable_energy_joules")
    );
    assert_eq!(
        dec(all["after_hours_waste_energy_joules"].as_str().unwrap()),
        sum(&rows, "after_hours_idle_energy_joules")
    );
    let usd = all["costs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["currency"] == "USD")
        .unwrap();
    assert_eq!(
        dec(usd["avoidable_cost"].as_str().unwrap()),
        sum(&rows, "avoidable_cost")
    );
    let daily = ok_json(
        call(
            &app,
            &viewer,
            Method::GET,
            "/api/v1/stats/daily?days=2",
            None,
        )
        .await,
        200,
    )
    .await;
    let daily_idle: Decimal = daily["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| dec(d["idle_seconds"].as_str().unwrap()))
        .sum();
    assert_eq!(daily_idle, sum(&rows, "idle_seconds"));

    // After hours only: the after-hours waste, whatever the time of day the test runs at.
    let after = what_if(
        &app,
        &viewer,
        &format!("sleep_after_minutes=5&when=after_hours&{window}"),
    )
    .await;
    assert_eq!(
        dec(after["slept_seconds"].as_str().unwrap()),
        sum(&rows, "after_hours_idle_seconds")
    );

    // A department is what was incurred there; the groups add up to the total.
    let departments = csv_rows(&csv("department").await);
    let it = departments
        .iter()
        .find(|r| r["department"] == "it")
        .unwrap();
    let scoped = what_if(
        &app,
        &viewer,
        &format!("sleep_after_minutes=5&department=it&{window}"),
    )
    .await;
    assert_eq!(
        dec(scoped["energy_joules"].as_str().unwrap()),
        dec(&it["avoidable_energy_joules"])
    );
    assert_eq!(
        (
            scoped["machines_affected"].as_u64(),
            scoped["sleeps"].as_u64()
        ),
        (Some(1), Some(2))
    );
    let groups = at["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    let group_sum: Decimal = groups
        .iter()
        .map(|g| dec(g["energy_joules"].as_str().unwrap()))
        .sum();
    assert_eq!(group_sum, dec(at["energy_joules"].as_str().unwrap()));
    assert_eq!(groups[0]["site"], "default");
    assert_eq!(groups[0]["department"], "finance");

    // A later limit saves less: 10 minutes leaves A's minutes 10–20; B never passes it.
    let later = what_if(&app, &viewer, &format!("sleep_after_minutes=10&{window}")).await;
    assert_eq!(later["slept_seconds"], "600");
    assert_eq!(
        (
            later["machines_affected"].as_u64(),
            later["sleeps"].as_u64()
        ),
        (Some(1), Some(1))
    );

    // Heartbeats arriving after a question are in the next answer (the rollup catches up):
    // A stays idle three more minutes, still exactly the stored figures.
    for i in 21..=23u64 {
        app.send(
            &agent_a,
            &hb(
                i + 1,
                t + Duration::from_secs(60 * i),
                Some(60.0 * i as f64),
            ),
        )
        .await;
    }
    let rows = csv_rows(&csv("machine").await);
    let again = what_if(&app, &viewer, &format!("sleep_after_minutes=5&{window}")).await;
    assert_eq!(
        dec(again["slept_seconds"].as_str().unwrap()),
        sum(&rows, "idle_seconds")
    );
    assert_eq!(
        dec(again["costs"]["USD"].as_str().unwrap()),
        sum(&rows, "avoidable_cost")
    );
    assert_eq!(
        dec(again["slept_seconds"].as_str().unwrap()),
        dec(at["slept_seconds"].as_str().unwrap()) + Decimal::from(180)
    );
    assert_eq!(again["sleeps"], at["sleeps"]);

    // Bad day counts for the daily series.
    for days in ["0", "367", "seven", "-1", "1.5"] {
        let res = call(
            &app,
            &viewer,
            Method::GET,
            &format!("/api/v1/stats/daily?days={days}"),
            None,
        )
        .await;
        let (status, code, named) = error_of(res).await;
        assert_eq!(
            (status, code.as_str(), named.as_deref()),
            (422, "invalid_field", Some("days")),
            "{days}"
        );
    }

    // Bad questions.
    let old = rfc(past(31 * 24 * 60));
    let future = rfc(past(-60));
    for (query, field) in [
        ("sleep_after_minutes=0".to_string(), "sleep_after_minutes"),
        (
            "sleep_after_minutes=10081".to_string(),
            "sleep_after_minutes",
        ),
        ("sleep_after_minutes=ten".to_string(), "sleep_after_minutes"),
        ("when=sometimes".to_string(), "when"),
        ("site=atlantis".to_string(), "site"),
        ("department=nobody".to_string(), "department"),
        (format!("from={old}"), "from"),
        (format!("to={future}"), "to"),
        (format!("from={to}&to={from}"), "from"),
    ] {
        let res = call(
            &app,
            &viewer,
            Method::GET,
            &format!("/api/v1/savings/what-if?{query}"),
            None,
        )
        .await;
        let (status, code, named) = error_of(res).await;
        assert_eq!(
            (status, code.as_str(), named.as_deref()),
            (422, "invalid_field", Some(field)),
            "{query}"
        );
    }

    // Several at once: a few wait their turn and all get the same answer (two people clicking
    // a preset together); a burst beyond the queue is refused with `busy`, never a failure.
    let query = format!("/api/v1/savings/what-if?sleep_after_minutes=7&from={from}&to={to}");
    let expected = ok_json(call(&app, &viewer, Method::GET, &query, None).await, 200).await;
    let answers = futures_util::future::join_all(
        (0..3).map(|_| call(&app, &viewer, Method::GET, &query, None)),
    )
    .await;
    for res in answers {
        assert_eq!(ok_json(res, 200).await, expected);
    }
    let burst = futures_util::future::join_all(
        (0..40).map(|_| call(&app, &viewer, Method::GET, &query, None)),
    )
    .await;
    let mut answered = 0;
    for res in burst {
        if res.status() == 200 {
            answered += 1;
            assert_eq!(res.json::<Value>().await.unwrap(), expected);
        } else {
            assert!(res.headers().contains_key("retry-after"));
            let (status, code, _) = error_of(res).await;
            assert_eq!((status, code.as_str()), (503, "busy"));
        }
    }
    assert!(
        answered >= 5,
        "at least the running one and the queue answer: {answered}"
    );
}

on_both_backends!(app: what_if_agrees_with_the_stored_figures);

/// A window of days reads its whole UTC days from the daily rollup and only its edge hours
/// from the hourly one: the answer is still the stored figures, and the sum of the answers
/// for each run of heartbeats alone.
async fn a_window_of_days_agrees_with_the_stored_figures(app: TestApp) {
    let admin = app.operator("admin", Role::Admin).await;
    let viewer = app.operator("viewer", Role::Viewer).await;
    let (_, agent) = enrol(&app, &admin, "default", "finance", "days-a").await;
    // Idle for 20 minutes two days ago (inside a whole UTC day of the window), and again
    // for 12 minutes 40 minutes ago (in its last hours).
    let old = past(2 * 24 * 60);
    let recent = past(40);
    let mut seq = 0;
    for (start, minutes) in [(old, 20u64), (recent, 12)] {
        for i in 0..=minutes {
            seq += 1;
            app.send(
                &agent,
                &hb(
                    seq,
                    start + Duration::from_secs(60 * i),
                    Some(60.0 * i as f64),
                ),
            )
            .await;
        }
    }
    let window = format!("from={}&to={}", rfc(past(4 * 24 * 60)), rfc(past(0)));
    let url = format!("/api/v1/reports/energy.csv?group_by=machine&{window}");
    let rows = csv_rows(
        &call(&app, &admin, Method::GET, &url, None)
            .await
            .text()
            .await
            .unwrap(),
    );
    let all = what_if(&app, &viewer, &format!("sleep_after_minutes=5&{window}")).await;
    assert_eq!(
        dec(all["slept_seconds"].as_str().unwrap()),
        sum(&rows, "idle_seconds")
    );
    assert_eq!(
        dec(all["energy_joules"].as_str().unwrap()),
        sum(&rows, "avoidable_energy_joules")
    );
    assert_eq!(
        dec(all["costs"]["USD"].as_str().unwrap()),
        sum(&rows, "avoidable_cost")
    );
    assert_eq!(
        (all["machines_affected"].as_u64(), all["sleeps"].as_u64()),
        (Some(1), Some(2))
    );
    // Each run alone, from windows of a few hours (hourly rows only).
    let alone = |from: time::OffsetDateTime| {
        let q = format!(
            "sleep_after_minutes=5&from={}&to={}",
            rfc(from - Duration::from_secs(3600)),
            rfc(from + Duration::from_secs(1800))
        );
        let (app, viewer) = (&app, &viewer);
        async move { what_if(app, viewer, &q).await }
    };
    let (a, b) = (alone(old).await, alone(recent).await);
    for field in ["slept_seconds", "energy_joules", "co2_grams"] {
        assert_eq!(
            dec(all[field].as_str().unwrap()),
            dec(a[field].as_str().unwrap()) + dec(b[field].as_str().unwrap()),
            "{field}"
        );
    }
    assert_eq!(a["slept_seconds"], "900");
    assert_eq!(b["slept_seconds"], "420");
    assert_eq!(
        (a["sleeps"].as_u64(), b["sleeps"].as_u64()),
        (Some(1), Some(1))
    );
}

on_both_backends!(app: a_window_of_days_agrees_with_the_stored_figures);
