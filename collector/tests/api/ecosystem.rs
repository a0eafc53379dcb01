//! End to end with the real Prometheus and Alertmanager (Debian builds): two collector
//! replicas on one PostgreSQL database, fed by agents with known patterns, Prometheus scraping
//! both every second with the shipped rules (a test copy with shortened `for:` generated from
//! the shipped files), Alertmanager routing to a webhook receiver in this test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};

use crate::helpers::{
    free_port, fresh_database, poll_until, spawn_app_with, test_settings, wait_for,
};
use crate::pack::{dashboard_queries, dashboards, repo};
use crate::postgres::missing;

/// A child process stopped (and waited for) when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        if poll_until(Duration::from_secs(5), || {
            matches!(self.0.try_wait(), Ok(Some(_)))
        }) {
            return;
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The shipped rule files with every `for:` shortened to 2 s and group intervals to 1 s —
/// generated, so the test can never drift from what ships.
fn test_copy_of_rules(into: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join("alerts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let mut doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for group in doc["groups"].as_sequence_mut().unwrap() {
            let group = group.as_mapping_mut().unwrap();
            if group.contains_key("interval") {
                group.insert("interval".into(), "1s".into());
            }
            for rule in group
                .get_mut("rules")
                .and_then(|r| r.as_sequence_mut())
                .unwrap()
            {
                let rule = rule.as_mapping_mut().unwrap();
                if rule.contains_key("for") {
                    rule.insert("for".into(), "2s".into());
                }
            }
        }
        let target = into.join(path.file_name().unwrap());
        std::fs::write(&target, serde_yaml::to_string(&doc).unwrap()).unwrap();
        out.push(target);
    }
    out.sort();
    out
}

async fn webhook() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let store = seen.clone();
    let app = Router::new().route(
        "/hook",
        post(move |axum::Json(body): axum::Json<Value>| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen)
}

/// Instant query; the result vector.
pub async fn query(client: &reqwest::Client, prom: &str, expr: &str) -> Vec<Value> {
    let url = reqwest::Url::parse_with_params(&format!("{prom}/api/v1/query"), &[("query", expr)])
        .unwrap();
    let res: Value = client.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(res["status"], "success", "{expr}: {res}");
    res["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub fn value_of(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_and_alertmanager_end_to_end() {
    let Some(db) = fresh_database().await else {
        return;
    };
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
        || Command::new("prometheus-alertmanager")
            .arg("--version")
            .output()
            .is_err()
    {
        missing("prometheus and prometheus-alertmanager (Debian packages)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("greenops-e2e-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("rules")).unwrap();

    // The collector, and three agents: one idle for hours, one busy, one without idle detection.
    // A second collector on the same database (a replica) receives nothing, but serves the same
    // per-machine series: dashboards and rules must count every machine once.
    let app = spawn_app_with(test_settings(&db)).await;
    let replica = spawn_app_with(test_settings(&db)).await;
    // A third replica in aggregate mode (no per-machine series): the fleet dashboard, filtered
    // to its instance, must have data from it alone.
    let mut aggregate_settings = test_settings(&db);
    aggregate_settings.metrics.per_machine = greenops_collector::settings::PerMachine::Never;
    let aggregate = spawn_app_with(aggregate_settings).await;
    let token = app.enrollment_token("default", "finance").await;
    let mut agents = Vec::new();
    for name in ["idle-pc", "busy-pc", "unknown-pc"] {
        let body = json!({"enrollment_token": token, "machine_key": format!("{name}-0000000000000"),
            "hostname": format!("{name}.example.test"), "os": "linux", "os_version": "12", "agent_version": "0.1.0"});
        let res = app.post_enroll(&body).await;
        assert_eq!(res.status(), 201);
        let enrolled: greenops_protocol::EnrollResponse = res.json().await.unwrap();
        agents.push((name, enrolled));
    }
    let idle_pc_id = agents[0].1.machine_id.clone();
    let idle_is_over = Arc::new(AtomicBool::new(false));
    let sending = Arc::new(AtomicBool::new(true));
    let sender = {
        let client = app.client.clone();
        let url = app.url("/api/v1/heartbeats");
        let agents: Vec<(String, String)> = agents
            .iter()
            .map(|(n, e)| (n.to_string(), e.agent_token.clone()))
            .collect();
        let idle_is_over = idle_is_over.clone();
        let sending = sending.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut seq = 0u64;
            while sending.load(Ordering::SeqCst) {
                seq += 1;
                let now = time::OffsetDateTime::now_utc();
                for (name, token) in &agents {
                    let idle = match name.as_str() {
                        "idle-pc" if !idle_is_over.load(Ordering::SeqCst) => {
                            json!(20_000.0 + started.elapsed().as_secs_f64())
                        }
                        "unknown-pc" => Value::Null,
                        _ => json!(3.0),
                    };
                    let hb = json!({"seq": seq, "sent_at": now.format(&time::format_description::well_known::Rfc3339).unwrap(),
                        "idle_seconds": idle, "session": "active", "cpu_usage_ratio": 0.2, "memory_usage_ratio": 0.5});
                    let res = client
                        .post(&url)
                        .bearer_auth(token)
                        .json(&hb)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 200);
                }
                // An agent's pace: the point is wall-clock time between heartbeats, which
                // Prometheus scrapes every second and the rules take rates over.
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
        })
    };

    // Alertmanager, routing everything to the webhook quickly.
    let (hook_port, notifications) = webhook().await;
    let am_port = free_port();
    std::fs::write(
        dir.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname, machine_id]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{hook_port}/hook\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let _alertmanager = Process(
        Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Prometheus with the generated rule copies.
    let rules = test_copy_of_rules(&dir.join("rules"));
    assert_eq!(rules.len(), 2);
    let collector: SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let replica_addr: SocketAddr = replica.base.trim_start_matches("http://").parse().unwrap();
    let aggregate_addr: SocketAddr = aggregate
        .base
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let prom_port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{}\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n\
             scrape_configs:\n  - job_name: greenops\n    static_configs:\n      - targets: ['{collector}', '{replica_addr}', '{aggregate_addr}']\n",
            rules.iter().map(|r| format!("  - {}\n", r.display())).collect::<String>()
        ),
    )
    .unwrap();
    let _prometheus = Process(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--rules.alert.resend-delay=1s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    let client = reqwest::Client::new();
    wait_for(
        "Prometheus scraping the collector",
        Duration::from_secs(60),
        || async {
            client
                .get(format!("{prom}/-/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
                && query(&client, &prom, "up{job=\"greenops\"} == 1")
                    .await
                    .len()
                    == 3
        },
    )
    .await;
    // Enough samples for rates and the recording rules.
    wait_for(
        "idle energy visible to Prometheus",
        Duration::from_secs(60),
        || async {
            query(
                &client,
                &prom,
                "fleet:greenops_machine_idle_power_watts:rate4m > 0",
            )
            .await
            .len()
                == 1
                && query(
                    &client,
                    &prom,
                    "site:greenops_machine_idle_energy_cost_per_hour:rate1h > 0",
                )
                .await
                .len()
                    == 1
        },
    )
    .await;

    // Both replicas serve the idle machine's energy; the recorded power counts it once: half of
    // what a plain sum over the scraped series says.
    wait_for(
        "the recorded idle power counting each machine once",
        Duration::from_secs(30),
        || async {
            let recorded = query(
                &client,
                &prom,
                "fleet:greenops_machine_idle_power_watts:rate4m",
            )
            .await;
            let doubled = query(
                &client,
                &prom,
                "sum by (job) (rate(greenops_machine_idle_energy_joules_total{job=\"greenops\"}[4m]))",
            )
            .await;
            match (recorded.first(), doubled.first()) {
                (Some(r), Some(d)) if value_of(d) > 0.0 => {
                    (0.4..0.6).contains(&(value_of(r) / value_of(d)))
                }
                _ => false,
            }
        },
    )
    .await;

    // Every recording rule has data.
    for path in &rules {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for group in doc["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                if let Some(record) = rule["record"].as_str() {
                    wait_for(record, Duration::from_secs(20), || async {
                        !query(&client, &prom, record).await.is_empty()
                    })
                    .await;
                }
            }
        }
    }

    // Every dashboard query has data, with the template variables substituted.
    for (path, dashboard) in dashboards() {
        for (title, expr) in dashboard_queries(&dashboard) {
            let expr = expr
                .replace("$__rate_interval", "10s")
                .replace("$__range", "1m")
                .replace("$__interval", "5s")
                .replace("$site", ".*")
                .replace("$department", ".*")
                .replace("$job", "greenops")
                .replace("$instance", ".*")
                .replace("$cluster", ".*")
                .replace("$machine_id", &idle_pc_id);
            wait_for(
                &format!("{} / {title}: {expr}", path.display()),
                Duration::from_secs(20),
                || async { !query(&client, &prom, &expr).await.is_empty() },
            )
            .await;
        }
    }

    // Aggregate mode: no per-machine series, and every panel that does not say it needs them
    // has data; the recorded fleet power is the per-machine job's.
    assert!(
        query(
            &client,
            &prom,
            "{job=\"greenops-aggregate\", __name__=~\"greenops_machine_.*\"}"
        )
        .await
        .is_empty()
    );
    for (path, dashboard) in dashboards() {
        if dashboard["description"]
            .as_str()
            .is_some_and(|d| d.contains("per-machine mode"))
        {
            continue;
        }
        for panel in dashboard["panels"].as_array().unwrap() {
            if panel["description"]
                .as_str()
                .is_some_and(|d| d.contains("per-machine mode"))
            {
                continue;
            }
            for t in panel["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_default()
                    .replace("$__rate_interval", "10s")
                    .replace("$__range", "1m")
                    .replace("$__interval", "5s")
                    .replace("$site", ".*")
                    .replace("$department", ".*")
                    .replace("$job", "greenops")
                    .replace("$instance", &aggregate_addr.to_string())
                    .replace("$cluster", ".*");
                if expr.is_empty() {
                    continue;
                }
                wait_for(
                    &format!(
                        "aggregate mode: {} / {}: {expr}",
                        path.display(),
                        panel["title"]
                    ),
                    Duration::from_secs(20),
                    || async { !query(&client, &prom, &expr).await.is_empty() },
                )
                .await;
            }
        }
    }
    // The idle machine alerts, with exact labels, and the notification reaches the webhook.
    wait_for(
        "GreenOpsMachineIdleTooLong at the webhook",
        Duration::from_secs(60),
        || async {
            notifications.lock().unwrap().iter().any(|n| {
                n["status"] == "firing"
                    && n["alerts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|a| a["labels"]["alertname"] == "GreenOpsMachineIdleTooLong")
            })
        },
    )
    .await;
    let firing: Vec<Value> = notifications
        .lock()
        .unwrap()
        .iter()
        .flat_map(|n| n["alerts"].as_array().unwrap().clone())
        .filter(|a| a["labels"]["alertname"] == "GreenOpsMachineIdleTooLong")
        .collect();
    let labels = &firing[0]["labels"];
    assert_eq!(labels["hostname"], "idle-pc.example.test");
    assert_eq!(labels["machine_id"], idle_pc_id.as_str());
    assert_eq!(labels["severity"], "info");
    assert_eq!(labels["site"], "default");
    assert_eq!(labels["department"], "finance");
    assert_eq!(labels["job"], "greenops");
    assert!(
        firing
            .iter()
            .all(|a| a["labels"]["hostname"] == "idle-pc.example.test"),
        "only the idle machine alerts"
    );
    assert!(
        firing[0]["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .ends_with("/alerts/runbooks.md#greenopsmachineidletoolong")
    );
    assert!(
        firing.iter().all(|a| a["labels"]["instance"].is_null()),
        "one alert per machine, not one per replica"
    );

    // The user comes back: the alert resolves and the webhook hears it.
    idle_is_over.store(true, Ordering::SeqCst);
    wait_for(
        "the resolved notification",
        Duration::from_secs(60),
        || async {
            notifications.lock().unwrap().iter().any(|n| {
                n["status"] == "resolved"
                    && n["alerts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|a| a["labels"]["alertname"] == "GreenOpsMachineIdleTooLong")
            })
        },
    )
    .await;

    // Stop the agents; once Prometheus has scraped the final values, its view and the
    // collector's totals agree.
    sending.store(false, Ordering::SeqCst);
    sender.await.unwrap();
    let totals = app.totals(&idle_pc_id).await;
    let expected = totals.idle_energy_j.to_string().parse::<f64>().unwrap();
    let series =
        format!("greenops_machine_idle_energy_joules_total{{machine_id=\"{idle_pc_id}\"}}");
    wait_for(
        "Prometheus to scrape the final totals",
        Duration::from_secs(10),
        || async {
            query(&client, &prom, &series)
                .await
                .first()
                .is_some_and(|s| value_of(s) == expected)
        },
    )
    .await;
    // increase() over the whole run extrapolates from its samples towards the window edges,
    // by at most about one average scrape interval at each end, at no more than idle power
    // (65 W): that is the tolerance.
    let increase = query(&client, &prom, &format!("increase({series}[10m])")).await;
    let first = query(&client, &prom, &format!("min_over_time({series}[10m])")).await;
    let count =
        value_of(&query(&client, &prom, &format!("count_over_time({series}[10m])")).await[0]);
    let span = value_of(
        &query(&client, &prom, &format!("max_over_time(timestamp({series})[10m:1s]) - min_over_time(timestamp({series})[10m:1s])")).await[0],
    );
    let interval = span / (count - 1.0).max(1.0);
    let observed = value_of(&increase[0]);
    let exact = expected - value_of(&first[0]);
    assert!(exact > 0.0);
    let tolerance = 2.0 * interval.max(1.0) * 65.0;
    assert!(
        (observed - exact).abs() <= tolerance,
        "increase() {observed} J vs collector {exact} J (tolerance {tolerance:.0} J, scrape interval {interval:.2} s)"
    );

    app.stop().await;
    replica.stop().await;
    aggregate.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}
