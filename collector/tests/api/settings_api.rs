//! Live settings shared by replicas (http/settings.rs).

use std::time::Duration;

use greenops_collector::store::Role;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{
    Db, call, enrol, error_of, fresh_database_of, hb, ok_json, past, spawn_app_with, test_settings,
    wait_until,
};

async fn settings_apply_to_ingest_and_replicas(db: Db) {
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let mut settings = test_settings(&url);
    settings.ingest.revocation_poll_seconds = 1;
    let app = spawn_app_with(settings.clone()).await;
    let replica = spawn_app_with(settings).await;
    let admin = app.operator("admin", Role::Admin).await;
    let shown = ok_json(
        call(&app, &admin, Method::GET, "/api/v1/settings", None).await,
        200,
    )
    .await;
    assert_eq!(
        (
            shown["idle_threshold_seconds"].as_u64(),
            shown["source"].as_str()
        ),
        (Some(300), Some("config"))
    );
    for (body, field) in [
        (json!({"max_gap_seconds": 0}), "max_gap_seconds"),
        (
            json!({"heartbeat_interval_seconds": 999}),
            "heartbeat_interval_seconds",
        ),
        (
            json!({"idle_threshold_seconds": -1}),
            "idle_threshold_seconds",
        ),
    ] {
        let (status, _, f) =
            error_of(call(&app, &admin, Method::PATCH, "/api/v1/settings", Some(body)).await).await;
        assert_eq!((status, f.as_deref()), (422, Some(field)));
    }
    let saved = ok_json(
        call(
            &app,
            &admin,
            Method::PATCH,
            "/api/v1/settings",
            Some(json!({"idle_threshold_seconds": 60})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (
            saved["idle_threshold_seconds"].as_u64(),
            saved["source"].as_str()
        ),
        (Some(60), Some("database"))
    );
    // The replica adopts it within its poll interval…
    let adopted = wait_until(Duration::from_secs(10), async || {
        let seen = ok_json(
            call(&replica, &admin, Method::GET, "/api/v1/settings", None).await,
            200,
        )
        .await;
        seen["idle_threshold_seconds"] == 60
    })
    .await;
    assert!(adopted, "the replica never saw the new threshold");
    // …and accounts with it from the moment of the change: 120 s idle over a 60 s interval
    // after it is 60 s of waste (the agent clock may run ahead of the server's by up to
    // `max_clock_skew_seconds`)…
    let (id, agent) = enrol(&replica, &admin, "default", "", "key").await;
    let t = past(0) + Duration::from_secs(1);
    replica.send(&agent, &hb(1, t, Some(0.0))).await;
    replica
        .send(&agent, &hb(2, t + Duration::from_secs(60), Some(120.0)))
        .await;
    assert_eq!(replica.totals(&id).await.idle_ms, 60_000);
    // …while time incurred before the change keeps the threshold of then (300 s), even when
    // its heartbeats arrive afterwards.
    let (late, agent) = enrol(&replica, &admin, "default", "", "key-late").await;
    let t = past(3);
    replica.send(&agent, &hb(1, t, Some(0.0))).await;
    replica
        .send(&agent, &hb(2, t + Duration::from_secs(60), Some(120.0)))
        .await;
    assert_eq!(replica.totals(&late).await.idle_ms, 0);
    replica.stop().await;
    app.stop().await;
}

on_both_backends!(settings_apply_to_ingest_and_replicas);
