//! docs/remote-write/ for real: a collector (bearer token on `/metrics`), a receiving
//! Prometheus started with `--web.enable-remote-write-receiver` from `receiver.yml`, and a
//! sender built from the documented `prometheus.yml` (addresses, token file and scrape
//! interval replaced). A per-machine counter must arrive at the receiver with exactly the
//! collector's value, carrying `job` and the sender's external labels.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::ecosystem::{Process, query, value_of};
use crate::helpers::{
    Db, free_port, fresh_database_of, hb, metric, past, spawn_app_with, test_settings, wait_for,
};
use crate::pack::repo;
use crate::postgres::missing;

fn yaml(path: &std::path::Path) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn prometheus(
    config: &std::path::Path,
    dir: &std::path::Path,
    port: u16,
    extra: &[&str],
) -> Process {
    Process(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greenops_series_arrive_by_remote_write() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        missing("prometheus (Debian package prometheus)");
        return;
    }
    let docs = repo().join("docs/remote-write");
    let dir = std::env::temp_dir().join(format!("greenops-rw-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();

    // The collector, its /metrics behind a bearer token, one machine with idle energy.
    let token = "remote-write-scrape-token";
    let mut settings = test_settings(&fresh_database_of(Db::Sqlite).await.unwrap());
    settings.metrics.bearer_token = Some(token.into());
    let app = spawn_app_with(settings).await;
    let machine = app.new_machine().await;
    for (seq, minutes_ago, idle) in [(1, 3, 400.0), (2, 2, 460.0), (3, 1, 30.0)] {
        app.send(
            &machine.agent_token,
            &hb(seq, past(minutes_ago), Some(idle)),
        )
        .await;
    }
    let exposition = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let family = "greenops_machine_idle_energy_joules_total";
    let expected = metric(&exposition, family, &machine.machine_id)
        .unwrap_or_else(|| panic!("no {family} for the machine:\n{exposition}"));
    assert!(expected > 0.0, "{family} = {expected}");

    // The receiver, as documented.
    let receiver_port = free_port();
    let _receiver = prometheus(
        &docs.join("receiver.yml"),
        &dir.join("receiver"),
        receiver_port,
        &["--web.enable-remote-write-receiver"],
    );

    // The sender: the documented file, pointed at this collector, token and receiver.
    let mut sender = yaml(&docs.join("prometheus.yml"));
    let external = sender["global"]["external_labels"].clone();
    let cluster = external["cluster"]
        .as_str()
        .expect("external_labels.cluster")
        .to_string();
    sender["global"]["scrape_interval"] = "1s".into();
    let scrape = &mut sender["scrape_configs"][0];
    assert_eq!(scrape["job_name"], "greenops");
    scrape["scrape_timeout"] = "1s".into();
    let token_file = dir.join("metrics-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    scrape["authorization"]["credentials_file"] = token_file.display().to_string().into();
    let collector = app.base.trim_start_matches("http://").to_string();
    scrape["static_configs"][0]["targets"] = vec![collector].into();
    let write = &mut sender["remote_write"][0];
    write["url"] = format!("http://127.0.0.1:{receiver_port}/api/v1/write").into();
    write["queue_config"]["batch_send_deadline"] = "1s".into();
    let config = dir.join("sender.yml");
    std::fs::write(&config, serde_yaml::to_string(&sender).unwrap()).unwrap();
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(&config)
        .output();
    if let Ok(out) = check {
        assert!(
            out.status.success(),
            "promtool check config (sender):\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let sender_port = free_port();
    let _sender = prometheus(&config, &dir.join("sender"), sender_port, &[]);

    let receiver = format!("http://127.0.0.1:{receiver_port}");
    let client = reqwest::Client::new();
    let selector = format!("{family}{{machine_id=\"{}\"}}", machine.machine_id);
    wait_for(
        "the collector's series at the receiving Prometheus",
        Duration::from_secs(60),
        || async {
            client
                .get(format!("{receiver}/-/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
                && !query(&client, &receiver, &selector).await.is_empty()
        },
    )
    .await;
    let samples = query(&client, &receiver, &selector).await;
    assert_eq!(samples.len(), 1, "{samples:?}");
    let sample = &samples[0];
    assert_eq!(
        value_of(sample),
        expected,
        "the receiver's value differs from the collector's"
    );
    assert_eq!(sample["metric"]["job"], "greenops", "{sample}");
    assert_eq!(sample["metric"]["cluster"], cluster.as_str(), "{sample}");
    // `up` is forwarded (GreenOpsCollectorDown reads it); the sender's own series are not.
    let up = query(&client, &receiver, "up{job=\"greenops\"}").await;
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(value_of(&up[0]), 1.0);
    let others = query(&client, &receiver, "{__name__=~\"prometheus_.+\"}").await;
    assert!(
        others.is_empty(),
        "forwarded beyond the keep list: {others:?}"
    );
    // It all came by remote write: the receiver scrapes nothing.
    let targets: serde_json::Value = client
        .get(format!("{receiver}/api/v1/targets"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        targets["data"]["activeTargets"].as_array().map(Vec::len),
        Some(0),
        "{targets}"
    );
    app.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}
