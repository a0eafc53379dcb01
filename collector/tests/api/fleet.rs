//! The in-memory fleet (collector/src/fleet.rs) and the two metric modes: replicas read what
//! changed in the database, so every collector's `/metrics` equals the store's totals whoever
//! committed them, also while commits are under way; group series are by where figures were
//! incurred and keep retired machines; `metrics.per_machine` switches the per-machine series.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Db, TestApp, call, fresh_database_of, hb, ok_json, past, spawn_app_with, test_settings,
};
use greenops_collector::settings::PerMachine;
use greenops_collector::store::Role;

/// Every sample of the families starting with `prefix`: series (name and labels) → value.
fn samples(text: &str, prefix: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of one family's samples.
fn total(text: &str, series: &str) -> f64 {
    samples(text, &format!("{series}{{")).values().sum()
}

async fn scrape(app: &TestApp) -> String {
    app.metrics().await
}

async fn replicas_serve_what_the_database_holds(db: Db) {
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let a = spawn_app_with(test_settings(&url)).await;
    let b = spawn_app_with(test_settings(&url)).await;
    let mut machines = Vec::new();
    for _ in 0..8 {
        machines.push(a.new_machine().await);
    }
    // Both collectors read the fleet before any heartbeat: later reads are of changes only.
    assert_eq!(
        total(&scrape(&a).await, "greenops_machine_observed_seconds_total"),
        0.0
    );
    assert_eq!(
        total(&scrape(&b).await, "greenops_machine_observed_seconds_total"),
        0.0
    );

    // Heartbeats through both collectors while both are scraped.
    let t = past(21);
    let mut senders = Vec::new();
    for (i, m) in machines.iter().enumerate() {
        let app_url = if i % 2 == 0 { a.url("") } else { b.url("") };
        let client = a.client.clone();
        let token = m.agent_token.clone();
        senders.push(tokio::spawn(async move {
            for seq in 1..=20u64 {
                let body = hb(
                    seq,
                    t + time::Duration::seconds(seq as i64 * 60),
                    Some(((seq * 97 + i as u64 * 31) % 900) as f64),
                );
                let res = client
                    .post(format!("{app_url}/api/v1/heartbeats"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
            }
        }));
    }
    let scrapes = {
        let (a_url, b_url, client) = (a.url("/metrics"), b.url("/metrics"), a.client.clone());
        tokio::spawn(async move {
            for _ in 0..15 {
                for u in [&a_url, &b_url] {
                    assert_eq!(client.get(u).send().await.unwrap().status(), 200);
                }
            }
        })
    };
    for s in senders {
        s.await.unwrap();
    }
    scrapes.await.unwrap();

    // Each collector's figures are the store's, to the last digit, and the two agree.
    let (text_a, text_b) = (scrape(&a).await, scrape(&b).await);
    for m in &machines {
        let stored = a.totals(&m.machine_id).await;
        for text in [&text_a, &text_b] {
            let seen = |name| crate::helpers::metric(text, name, &m.machine_id).unwrap();
            assert_eq!(
                seen("greenops_machine_observed_seconds_total"),
                stored.observed_ms as f64 / 1000.0
            );
            assert_eq!(
                seen("greenops_machine_idle_seconds_total"),
                stored.idle_ms as f64 / 1000.0
            );
            assert_eq!(
                seen("greenops_machine_idle_energy_joules_total"),
                stored.idle_energy_j.to_string().parse::<f64>().unwrap()
            );
        }
    }
    let per_machine = |text: &str| {
        let mut s = samples(text, "greenops_machine_");
        // Status follows the clock: the two scrapes are a moment apart.
        s.retain(|k, _| !k.starts_with("greenops_machine_status"));
        s
    };
    assert_eq!(per_machine(&text_a), per_machine(&text_b));
    assert_eq!(
        samples(&text_a, "greenops_group_"),
        samples(&text_b, "greenops_group_")
    );
    // Groups add up to the machines.
    for family in [
        "observed_seconds",
        "idle_seconds",
        "idle_energy_joules",
        "energy_joules",
    ] {
        let machines_sum = total(&text_a, &format!("greenops_machine_{family}_total"));
        let groups_sum = total(&text_a, &format!("greenops_group_{family}_total"));
        assert!(
            (machines_sum - groups_sum).abs() < 1e-6 * machines_sum.max(1.0),
            "{family}: {machines_sum} vs {groups_sum}"
        );
    }
    let before_move = samples(&text_a, "greenops_group_observed_seconds_total");
    assert_eq!(before_move.len(), 1, "{before_move:?}");

    // An operator on B moves a machine to a new site and retires another; A sees both at once.
    let admin = b.operator("admin", Role::Admin).await;
    ok_json(
        call(
            &b,
            &admin,
            Method::POST,
            "/api/v1/sites",
            Some(
                json!({"name": "annex", "currency": "EUR", "price_per_kwh": "0.2",
                        "carbon_intensity_g_per_kwh": 50, "timezone": "UTC"}),
            ),
        )
        .await,
        201,
    )
    .await;
    let moved = &machines[0];
    let move_at = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let from = move_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let res: Value = ok_json(
        call(
            &b,
            &admin,
            Method::PATCH,
            &format!("/api/v1/machines/{}", moved.machine_id),
            Some(json!({"site": "annex", "department": "ops", "effective_from": from})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(res["site"], "annex");
    let retired = &machines[1];
    let res = call(
        &b,
        &admin,
        Method::DELETE,
        &format!("/api/v1/machines/{}", retired.machine_id),
        None,
    )
    .await;
    assert_eq!(res.status(), 204);
    a.send(
        &moved.agent_token,
        &hb(21, move_at + time::Duration::seconds(60), Some(600.0)),
    )
    .await;

    let text = scrape(&a).await;
    let info = |id: &str| {
        text.lines()
            .find(|l| l.starts_with("greenops_machine_info{") && l.contains(id))
            .map(str::to_string)
    };
    assert!(
        info(&moved.machine_id)
            .unwrap()
            .contains("site=\"annex\",department=\"ops\"")
    );
    assert_eq!(
        info(&retired.machine_id),
        None,
        "retired machines have no series"
    );
    // The old group keeps everything incurred there (the retired machine's too, and the
    // moved machine's time up to the move); the new group holds only what came after it.
    let groups = samples(&text, "greenops_group_observed_seconds_total");
    let old_key = before_move.keys().next().unwrap();
    assert!(groups[old_key] > before_move[old_key], "{groups:?}");
    let new_key = "greenops_group_observed_seconds_total{site=\"annex\",department=\"ops\"}";
    // The move took effect when the server received it (a stated moment a little in the
    // past means now): the new group holds at most the minute after it.
    assert!(
        groups[new_key] > 0.0 && groups[new_key] <= 60.0,
        "{groups:?}"
    );
    let observed = |text: &str| {
        crate::helpers::metric(
            text,
            "greenops_machine_observed_seconds_total",
            &moved.machine_id,
        )
        .unwrap()
    };
    let grown = groups.values().sum::<f64>() - before_move.values().sum::<f64>();
    assert!(
        (grown - (observed(&text) - observed(&text_a))).abs() < 1e-9,
        "{grown}"
    );
    assert_eq!(
        samples(&text, "greenops_group_"),
        samples(&scrape(&b).await, "greenops_group_")
    );

    // Aggregate mode on the same database: the same groups and counts, no machine series.
    let mut settings = test_settings(&url);
    settings.metrics.per_machine = PerMachine::Never;
    let c = spawn_app_with(settings).await;
    let mut settings = test_settings(&url);
    settings.metrics.per_machine_max = 6; // 7 live machines
    let d = spawn_app_with(settings).await;
    let mut settings = test_settings(&url);
    settings.metrics.per_machine_max = 7;
    let e = spawn_app_with(settings).await;
    let text_c = scrape(&c).await;
    assert!(!text_c.contains("greenops_machine_"), "{text_c}");
    assert_eq!(
        samples(&text_c, "greenops_group_"),
        samples(&text, "greenops_group_")
    );
    assert_eq!(
        samples(&text_c, "greenops_machines{"),
        samples(&text, "greenops_machines{")
    );
    assert_eq!(
        samples(&text_c, "greenops_machines{").values().sum::<f64>(),
        7.0
    );
    assert!(!scrape(&d).await.contains("greenops_machine_info{"));
    assert!(scrape(&e).await.contains("greenops_machine_info{"));
    for app in [a, b, c, d, e] {
        app.stop().await;
    }
}

on_both_backends!(replicas_serve_what_the_database_holds);
