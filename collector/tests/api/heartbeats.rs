//! `POST /api/v1/heartbeats`: exact accounting over real HTTP, and every bad input.

use serde_json::{Value, json};

use crate::helpers::{TestApp, Totals, dec, error_of, hb, metric, past};

async fn the_worked_scenario_is_exact_and_replays_change_nothing(app: TestApp) {
    let m = app.new_machine().await;
    let t = past(10);
    for (seq, at, idle) in [(1, 0, 0.0), (2, 60, 400.0), (3, 120, 30.0)] {
        let answer = app
            .send(
                &m.agent_token,
                &hb(seq, t + time::Duration::seconds(at), Some(idle)),
            )
            .await;
        assert_eq!(answer["accepted"], 1);
        assert_eq!(answer["results"][0]["status"], "accepted");
    }
    let expected = Totals {
        last_seq: 3,
        observed_ms: 120_000,
        idle_ms: 60_000,
        unknown_ms: 0,
        energy_j: dec("11100"),
        idle_energy_j: dec("3900"),
        // 3900 J = 3900/3.6e6 kWh; × 0.12 = 0.00013; × 420 g = 0.455 g.
        idle_cost: dec("0.00013"),
        idle_co2_g: dec("0.455"),
        cost: dec("0.00037"),
        co2_g: dec("1.295"),
        heartbeat_rows: 3,
    };
    assert_eq!(app.totals(&m.machine_id).await, expected);

    // Replays, singly and in a batch, are acknowledged and change nothing.
    let answer = app
        .send(
            &m.agent_token,
            &hb(2, t + time::Duration::seconds(60), Some(400.0)),
        )
        .await;
    assert_eq!(
        (answer["accepted"].as_u64(), answer["duplicates"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(answer["results"][0]["status"], "duplicate");
    let batch = json!({"heartbeats": [
        hb(1, t, Some(0.0)),
        hb(2, t + time::Duration::seconds(60), Some(400.0)),
        hb(3, t + time::Duration::seconds(120), Some(30.0)),
    ]});
    let answer = app.send(&m.agent_token, &batch).await;
    assert_eq!(answer["duplicates"], 3);
    assert_eq!(app.totals(&m.machine_id).await, expected);

    let text = app.metrics().await;
    let v = |name| metric(&text, name, &m.machine_id).unwrap_or(f64::NAN);
    assert_eq!(v("greenops_machine_observed_seconds_total"), 120.0);
    assert_eq!(v("greenops_machine_idle_seconds_total"), 60.0);
    assert_eq!(v("greenops_machine_energy_joules_total"), 11100.0);
    assert_eq!(v("greenops_machine_idle_energy_joules_total"), 3900.0);
    assert_eq!(v("greenops_machine_idle_energy_cost_total"), 0.00013);
    assert_eq!(v("greenops_machine_idle_co2_grams_total"), 0.455);
    assert_eq!(v("greenops_machine_input_idle_seconds"), 30.0);
    assert_eq!(v("greenops_machine_cpu_usage_ratio"), 0.07);
    assert!(text.contains(&format!(
        "greenops_machine_status{{machine_id=\"{}\",site=\"default\",department=\"\",status=\"active\"}} 1",
        m.machine_id
    )));
    app.stop().await;
}

async fn spooled_batches_give_exactly_the_totals_of_live_delivery(app: TestApp) {
    let live = app.new_machine().await;
    let spooled = app.new_machine().await;
    let t = past(60);
    let beats: Vec<Value> = (0..40u64)
        .map(|i| {
            let idle = match i % 7 {
                0 => None,
                k => Some((k * 97) as f64 + 0.25),
            };
            // A gap of 10 minutes in the middle: unobserved.
            let at = if i < 20 { i * 60 } else { i * 60 + 600 };
            hb(i + 1, t + time::Duration::seconds(at as i64), idle)
        })
        .collect();
    for b in &beats {
        app.send(&live.agent_token, b).await;
    }
    // The spooled agent delivers the first 10 live, then the rest after an outage in batches
    // of 12, re-sending the last delivered batch once (as after a lost acknowledgement).
    for b in &beats[..10] {
        app.send(&spooled.agent_token, b).await;
    }
    let rest = &beats[10..];
    let chunks: Vec<&[Value]> = rest.chunks(12).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        app.send(&spooled.agent_token, &json!({"heartbeats": chunk}))
            .await;
        if i == 1 {
            let answer = app
                .send(&spooled.agent_token, &json!({"heartbeats": chunk}))
                .await;
            assert_eq!(answer["duplicates"].as_u64(), Some(chunk.len() as u64));
        }
    }
    let a = app.totals(&live.machine_id).await;
    let b = app.totals(&spooled.machine_id).await;
    assert_eq!(a, b);
    assert_eq!(
        a.observed_ms,
        (38 * 60) * 1000,
        "the 10-minute gap is not observed"
    );
    assert!(a.unknown_ms > 0 && a.idle_ms > 0);
    app.stop().await;
}

async fn locked_sessions_and_unknown_idle_drive_status_and_totals(app: TestApp) {
    let locked = app.new_machine().await;
    let unknown = app.new_machine().await;
    let t = past(5);
    let mut a = hb(1, t, Some(0.0));
    app.send(&locked.agent_token, &a).await;
    a = hb(2, t + time::Duration::seconds(60), Some(20.0));
    a["session"] = json!("locked");
    app.send(&locked.agent_token, &a).await;
    app.send(&unknown.agent_token, &hb(1, t, None)).await;
    app.send(
        &unknown.agent_token,
        &hb(2, t + time::Duration::seconds(60), None),
    )
    .await;

    // Locking the screen for a coffee is not waste: the threshold applies to every session
    // state (v1 counted those 20 s).
    let l = app.totals(&locked.machine_id).await;
    assert_eq!((l.observed_ms, l.idle_ms), (60_000, 0));
    let u = app.totals(&unknown.machine_id).await;
    assert_eq!(
        (u.observed_ms, u.unknown_ms, u.idle_ms),
        (60_000, 60_000, 0)
    );
    assert_eq!(u.energy_j, dec("3900"));

    let text = app.metrics().await;
    let status_of = |id: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("greenops_machine_status{") && l.contains(id) && l.ends_with(" 1")
            })
            .and_then(|l| {
                l.split("status=\"")
                    .nth(1)?
                    .split('"')
                    .next()
                    .map(String::from)
            })
    };
    assert_eq!(status_of(&locked.machine_id).as_deref(), Some("idle"));
    assert_eq!(status_of(&unknown.machine_id).as_deref(), Some("unknown"));
    let idle_at_default: u64 = text
        .lines()
        .filter(|l| {
            l.starts_with("greenops_machines{site=\"default\",") && l.contains("status=\"idle\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(idle_at_default, 1, "{text}");
    app.stop().await;
}

async fn bad_input_gets_the_right_error_and_changes_nothing(app: TestApp) {
    let m = app.new_machine().await;
    let t = past(10);
    app.send(&m.agent_token, &hb(1, t, Some(0.0))).await;
    app.send(
        &m.agent_token,
        &hb(2, t + time::Duration::seconds(60), Some(400.0)),
    )
    .await;
    let before = app.totals(&m.machine_id).await;
    let next = |patch: Value| {
        let mut body = hb(3, t + time::Duration::seconds(120), Some(500.0));
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };

    // 422 naming the field.
    let cases: Vec<(Value, &str)> = vec![
        (next(json!({"idle_seconds": -1})), "idle_seconds"),
        (next(json!({"cpu_usage_ratio": 1.5})), "cpu_usage_ratio"),
        (
            next(json!({"memory_usage_ratio": -0.5})),
            "memory_usage_ratio",
        ),
        (next(json!({"seq": 0})), "seq"),
        (next(json!({"seq": "three"})), "seq"),
        (next(json!({"sent_at": "27/11/2026 09:15"})), "sent_at"),
        (next(json!({"session": "asleep"})), "session"),
        (
            json!({"heartbeats": [next(json!({"seq": 3, "session": 7})), next(json!({"seq": 4, "idle_seconds": "x"}))]}),
            "heartbeats[0].session",
        ),
    ];
    for (body, field) in cases {
        let (status, code, named) =
            error_of(app.post_heartbeats(&m.agent_token, &body).await).await;
        assert_eq!((status, code.as_str()), (422, "invalid_field"), "{body}");
        assert_eq!(named.as_deref(), Some(field), "{body}");
    }
    // A clock far ahead of the server's: its own code.
    let (status, code, named) = error_of(
        app.post_heartbeats(
            &m.agent_token,
            &next(json!({"sent_at": "2099-01-01T00:00:00Z"})),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str(), named.as_deref()),
        (422, "clock_ahead", Some("sent_at"))
    );
    let mut missing_idle = next(json!({}));
    missing_idle.as_object_mut().unwrap().remove("idle_seconds");
    let (status, _, named) =
        error_of(app.post_heartbeats(&m.agent_token, &missing_idle).await).await;
    assert_eq!((status, named.as_deref()), (422, Some("idle_seconds")));

    // 400: not JSON.
    let res = app
        .client
        .post(app.url("/api/v1/heartbeats"))
        .bearer_auth(&m.agent_token)
        .body("{\"seq\": 3, \"sent_at\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, 400);

    // 401: no, unknown or malformed credentials.
    let res = app
        .client
        .post(app.url("/api/v1/heartbeats"))
        .json(&next(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, 401);
    let res = app
        .post_heartbeats("gok_agent_nope", &next(json!({})))
        .await;
    assert_eq!(error_of(res).await.0, 401);
    let res = app
        .client
        .post(app.url("/api/v1/heartbeats"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .json(&next(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, 401);

    // 413: too many heartbeats, or too many bytes.
    let many: Vec<Value> = (0..1001)
        .map(|i| {
            hb(
                10 + i,
                t + time::Duration::seconds(180 + i as i64),
                Some(1.0),
            )
        })
        .collect();
    let (status, code, _) = error_of(
        app.post_heartbeats(&m.agent_token, &json!({"heartbeats": many}))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    let huge = format!(
        "{{\"seq\": 3, \"sent_at\": \"{}\", \"idle_seconds\": 1, \"pad\": \"{}\"}}",
        "2026-11-27T09:15:00Z",
        "x".repeat(1024 * 1024)
    );
    let res = app
        .client
        .post(app.url("/api/v1/heartbeats"))
        .bearer_auth(&m.agent_token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, 413);

    // Unknown routes answer in the same error shape.
    let res = app
        .client
        .get(app.url("/api/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, 404);

    assert_eq!(
        app.totals(&m.machine_id).await,
        before,
        "bad input changed totals"
    );
    // ...and one bad heartbeat never refuses its neighbours: the good one of a batch counts.
    let answer = app
        .send(
            &m.agent_token,
            &json!({"heartbeats": [next(json!({})), next(json!({"seq": 4, "idle_seconds": "x"}))]}),
        )
        .await;
    assert_eq!(
        (&answer["accepted"], &answer["rejected"]),
        (&json!(1), &json!(1)),
        "{answer}"
    );
    assert_eq!(answer["results"][0]["status"], "accepted");
    assert_eq!(answer["results"][1]["status"], "rejected");
    assert_eq!(answer["results"][1]["error"]["code"], "invalid_field");
    assert_eq!(
        answer["results"][1]["error"]["field"],
        "heartbeats[1].idle_seconds"
    );
    let after = app.totals(&m.machine_id).await;
    assert_eq!(after.idle_ms - before.idle_ms, 60_000);
    let text = app.metrics().await;
    let rejected = text
        .lines()
        .find(|l| l.starts_with("greenops_heartbeats_total{result=\"rejected\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap();
    assert!(
        rejected >= 10.0,
        "rejected heartbeats are counted: {rejected}"
    );
    app.stop().await;
}

on_both_backends!(app: the_worked_scenario_is_exact_and_replays_change_nothing, spooled_batches_give_exactly_the_totals_of_live_delivery, locked_sessions_and_unknown_idle_drive_status_and_totals, bad_input_gets_the_right_error_and_changes_nothing);
