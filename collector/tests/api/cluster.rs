//! Several collectors on one database: no double counting under concurrent delivery of the
//! same heartbeats, and totals that survive a restart.

use serde_json::{Value, json};

use crate::helpers::{
    Db, fresh_database_of, hb, model_totals, past, spawn_app_with, test_settings, valid_beats,
};

async fn two_collectors_receiving_the_same_heartbeats_never_double_count(db: Db) {
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let a = spawn_app_with(test_settings(&url)).await;
    let b = spawn_app_with(test_settings(&url)).await;
    let t = past(120);
    let mut machines = Vec::new();
    for _ in 0..6 {
        machines.push(a.new_machine().await);
    }
    let beats: Vec<Value> = (0..30u64)
        .map(|i| {
            hb(
                i + 1,
                t + time::Duration::seconds(i as i64 * 60),
                Some(((i * 53) % 900) as f64),
            )
        })
        .collect();

    // Every heartbeat goes to both collectors at the same moment, some singly, some batched.
    let mut tasks = Vec::new();
    for m in &machines {
        for (app, offset) in [(&a, 0), (&b, 1)] {
            let token = m.agent_token.clone();
            let beats = beats.clone();
            let client = app.client.clone();
            let url = app.url("/api/v1/heartbeats");
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while i < beats.len() {
                    let body = if (i + offset) % 3 == 0 && i + 3 <= beats.len() {
                        i += 3;
                        json!({"heartbeats": &beats[i - 3..i]})
                    } else {
                        i += 1;
                        beats[i - 1].clone()
                    };
                    let res = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }

    // The expected totals: the pure model applied once, in order.
    let valid = valid_beats(&beats);
    for m in &machines {
        let expected = model_totals(&url, &m.machine_id, &valid).await;
        assert!(expected.idle_ms > 0);
        let got = a.totals(&m.machine_id).await;
        assert_eq!(got.heartbeat_rows, 30);
        assert_eq!(got.last_seq, 30);
        assert_eq!(got.observed_ms, expected.observed_ms);
        assert_eq!(got.idle_ms, expected.idle_ms);
        assert_eq!(got.energy_j, expected.energy_j);
        assert_eq!(got.idle_energy_j, expected.idle_energy_j);
        assert_eq!(got.cost, expected.cost);
        assert_eq!(got.idle_cost, expected.idle_cost);
        assert_eq!(got.co2_g, expected.co2_g);
    }

    // Both replicas serve the same per-machine counters.
    let strip = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("greenops_machine_") && !l.contains("last_heartbeat"))
            .map(String::from)
            .collect()
    };
    assert_eq!(strip(a.metrics().await), strip(b.metrics().await));
    a.stop().await;
    b.stop().await;
}

async fn totals_survive_a_restart(db: Db) {
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let app = spawn_app_with(test_settings(&url)).await;
    let m = app.new_machine().await;
    let t = past(10);
    app.send(&m.agent_token, &hb(1, t, Some(900.0))).await;
    app.send(
        &m.agent_token,
        &hb(2, t + time::Duration::seconds(60), Some(960.0)),
    )
    .await;
    let counters = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("_total{machine_id"))
            .map(String::from)
            .collect()
    };
    let before = counters(app.metrics().await);
    assert!(before.len() >= 8);
    app.stop().await;

    let app = spawn_app_with(test_settings(&url)).await;
    assert_eq!(counters(app.metrics().await), before);
    // The accounting cursor survived too: the next heartbeat continues the interval.
    app.send(
        &m.agent_token,
        &hb(3, t + time::Duration::seconds(120), Some(1020.0)),
    )
    .await;
    assert_eq!(app.totals(&m.machine_id).await.idle_ms, 120_000);
    app.stop().await;
}

on_both_backends!(
    two_collectors_receiving_the_same_heartbeats_never_double_count,
    totals_survive_a_restart,
);
