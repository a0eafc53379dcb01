//! The database going away: 503 quickly, never a hang, and recovery without a restart.

use std::time::{Duration, Instant};

use crate::helpers::{error_of, hb, past, spawn_app_with, test_settings, wait_until};
use crate::postgres::{Cluster, missing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_gives_503_then_recovers() {
    // This test stops its database, so it gets a cluster of its own.
    let Some(cluster) = tokio::task::spawn_blocking(Cluster::start).await.unwrap() else {
        missing("PostgreSQL server binaries (initdb, pg_ctl)");
        return;
    };
    let url = cluster.url("postgres");
    let app = spawn_app_with(test_settings(&url)).await;
    let m = app.new_machine().await;
    let t = past(10);
    app.send(&m.agent_token, &hb(1, t, Some(0.0))).await;
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop_server();
        cluster
    })
    .await
    .unwrap();

    for seq in [2u64, 3] {
        let started = Instant::now();
        let res = app
            .post_heartbeats(
                &m.agent_token,
                &hb(seq, t + time::Duration::seconds(60), Some(400.0)),
            )
            .await;
        let took = started.elapsed();
        assert_eq!(
            res.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            Some("5")
        );
        let (status, code, _) = error_of(res).await;
        assert_eq!((status, code.as_str()), (503, "unavailable"));
        assert!(took < Duration::from_secs(2), "503 took {took:?}");
    }
    let started = Instant::now();
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(4));
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the process itself is fine");

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_server();
        cluster
    })
    .await
    .unwrap();

    // Recovery without restarting the collector (allow the pool a moment to reconnect).
    let mut last = None;
    let recovered = wait_until(Duration::from_secs(15), async || {
        let res = app
            .post_heartbeats(
                &m.agent_token,
                &hb(2, t + time::Duration::seconds(60), Some(400.0)),
            )
            .await;
        last = Some(res.status());
        res.status() == 200
    })
    .await;
    assert!(recovered, "no recovery: {last:?}");
    let totals = app.totals(&m.machine_id).await;
    assert_eq!((totals.observed_ms, totals.idle_ms), (60_000, 60_000));
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
    drop(cluster);
}
