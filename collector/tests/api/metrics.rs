//! `/metrics` over HTTP: every family of DESIGN §4, `promtool check metrics`, auth.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::{Db, fresh_database, hb, past, spawn_app_on, spawn_app_with, test_settings};
use crate::postgres::missing;

/// Every metric family name DESIGN §4 promises, as it appears on sample lines.
const FAMILIES: &[&str] = &[
    "greenops_machine_info",
    "greenops_machine_status",
    "greenops_machine_observed_seconds_total",
    "greenops_machine_idle_seconds_total",
    "greenops_machine_energy_joules_total",
    "greenops_machine_idle_energy_joules_total",
    "greenops_machine_energy_cost_total",
    "greenops_machine_idle_energy_cost_total",
    "greenops_machine_co2_grams_total",
    "greenops_machine_idle_co2_grams_total",
    "greenops_machine_avoidable_energy_joules_total",
    "greenops_machine_avoidable_energy_cost_total",
    "greenops_machine_avoidable_co2_grams_total",
    "greenops_machine_after_hours_idle_seconds_total",
    "greenops_machine_after_hours_idle_energy_joules_total",
    "greenops_machine_unknown_seconds_total",
    "greenops_machine_gap_seconds_total",
    "greenops_machine_input_idle_seconds",
    "greenops_machine_cpu_usage_ratio",
    "greenops_machine_memory_usage_ratio",
    "greenops_machine_last_heartbeat_timestamp_seconds",
    "greenops_machines",
    "greenops_heartbeats_total",
    "greenops_ingest_batch_size_bucket",
    "greenops_ingest_commit_duration_seconds_bucket",
    "greenops_http_request_duration_seconds_bucket",
    "greenops_build_info",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
];

async fn populated(db: Db) -> Option<(crate::helpers::TestApp, String)> {
    let app = spawn_app_on(db).await?;
    let m = app.new_machine().await;
    let t = past(10);
    app.send(&m.agent_token, &hb(1, t, Some(0.0))).await;
    app.send(
        &m.agent_token,
        &hb(2, t + time::Duration::seconds(60), Some(400.0)),
    )
    .await;
    let text = app.metrics().await;
    Some((app, text))
}

async fn every_documented_family_is_exposed_with_help(db: Db) {
    let Some((app, text)) = populated(db).await else {
        return;
    };
    for family in FAMILIES {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{family}{{"))
                    || l.starts_with(&format!("{family} "))),
            "missing {family}"
        );
    }
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
    }
    assert!(text.ends_with("# EOF\n"));
    // Routes are matched paths, never raw URLs.
    assert!(text.contains("route=\"/api/v1/heartbeats\",method=\"POST\",status=\"200\""));
    assert!(text.contains("greenops_heartbeats_total{result=\"accepted\"} 2"));
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(
        res.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    app.stop().await;
}

/// What `promtool check metrics` says about `text`; `None` (after reporting) without promtool.
fn promtool_report(text: &str) -> Option<String> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        missing("promtool (Debian package prometheus)");
        return None;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Some(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The report without what promtool says of every valid OpenMetrics counter.
fn promtool_problems(text: &str) -> Option<Vec<String>> {
    let report = promtool_report(text)?;
    // promtool 2.42 reports "no help text" for every OpenMetrics counter even though HELP is
    // present (it reads the family name without `_total`). Its unit lint also reads the
    // "hours" of `after_hours` (a time of day, not a unit) in the names the contract fixes
    // (`greenops_machine_after_hours_idle_*`). Anything else is a real problem.
    Some(
        report
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains("no help text"))
            .filter(|l| {
                !((l.starts_with("greenops_machine_after_hours_idle_")
                    || l.starts_with("greenops_group_after_hours_idle_"))
                    && l.ends_with("use base unit \"seconds\" instead of \"hours\""))
            })
            .map(str::to_string)
            .collect(),
    )
}

async fn promtool_accepts_the_exposition(db: Db) {
    let Some((app, text)) = populated(db).await else {
        return;
    };
    app.stop().await;
    if let Some(problems) = promtool_problems(&text) {
        assert!(
            problems.is_empty(),
            "promtool check metrics:\n{problems:#?}"
        );
    }
}

/// A scraper asking only for `text/plain` gets Prometheus text 0.0.4: the same samples, no
/// `# UNIT` or `# EOF`, counters typed under their `_total` names — and promtool then finds
/// every help text.
async fn the_classic_text_format_is_served_when_asked(db: Db) {
    let Some((app, _)) = populated(db).await else {
        return;
    };
    // A scrape's own request shows from the next scrape on: compare with a second one.
    let open_metrics = app.metrics().await;
    let res = app
        .client
        .get(app.url("/metrics"))
        .header("accept", "text/plain; version=0.0.4")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = res.text().await.unwrap();
    app.stop().await;
    assert!(
        !text.contains("# UNIT ") && !text.contains("# EOF"),
        "{text}"
    );
    assert!(text.contains("# TYPE greenops_machine_idle_seconds_total counter\n"));
    assert!(text.contains("# HELP greenops_machine_idle_seconds_total "));
    assert!(text.contains("# TYPE greenops_machine_input_idle_seconds gauge\n"));
    assert_eq!(series(&text), series(&open_metrics));
    if let Some(report) = promtool_report(&text) {
        // No exception for counters here: 0.0.4 names them as promtool expects.
        assert!(!report.contains("no help text"), "{report}");
        assert_eq!(promtool_problems(&text), Some(Vec::new()), "{report}");
    }
}

#[tokio::test]
async fn metrics_can_require_a_bearer_token() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let mut settings = test_settings(&db);
    settings.metrics.bearer_token = Some("scrape-secret".into());
    let app = spawn_app_with(settings).await;
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("scrape-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn metrics_can_require_basic_auth() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let mut settings = test_settings(&db);
    settings.metrics.basic_auth_username = Some("prometheus".into());
    settings.metrics.basic_auth_password = Some("scrape:secret".into());
    let app = spawn_app_with(settings).await;
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Basic realm=\"greenops metrics\""
    );
    for (user, password, status) in [
        ("prometheus", "wrong", 401),
        ("someone", "scrape:secret", 401),
        ("prometheus", "scrape:secret", 200),
    ] {
        let res = app
            .client
            .get(app.url("/metrics"))
            .basic_auth(user, Some(password))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{user}:{password}");
    }
    app.stop().await;
}

/// The series of an exposition, without their values (timestamps and gauges move).
fn series(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s))
        .collect()
}

async fn scrapes_are_gzipped_when_asked(db: Db) {
    let Some((app, _)) = populated(db).await else {
        return;
    };
    // A scrape's own request shows from the next scrape on: compare with a second one.
    let plain = app.metrics().await;
    let gzipped = |accept: &'static str, encoding: &'static str| {
        let request = app
            .client
            .get(app.url("/metrics"))
            .header("accept", accept)
            .header("accept-encoding", encoding);
        async move {
            let res = request.send().await.unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["content-encoding"], "gzip", "{encoding}");
            assert_eq!(res.headers()["vary"], "accept-encoding");
            let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
            let length: usize = res.headers()["content-length"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let bytes = res.bytes().await.unwrap();
            assert_eq!(bytes.len(), length);
            let mut text = String::new();
            // The decoder checks the trailer's CRC-32 and length.
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
                .unwrap();
            (content_type, bytes.len(), text)
        }
    };
    // The first gzip scrape deflates the fleet's texts, the second serves them as kept.
    for round in 0..2 {
        let (content_type, compressed, text) =
            gzipped("application/openmetrics-text", "deflate, gzip;q=0.9, br").await;
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert_eq!(series(&text), series(&plain), "round {round}");
        assert!(text.ends_with("# EOF\n"));
        assert!(
            compressed * 3 < text.len(),
            "{compressed} compressed vs {} plain",
            text.len()
        );
    }
    // The classic format compresses the same way (its headers are rewritten, its samples are
    // the same lines).
    let (content_type, _, text) = gzipped("text/plain;version=0.0.4", "gzip").await;
    assert!(content_type.starts_with("text/plain"));
    assert!(text.contains("# TYPE greenops_machine_idle_seconds_total counter\n"));
    assert!(!text.contains("# EOF"));
    // A repeated header is one list.
    let res = app
        .client
        .get(app.url("/metrics"))
        .header("accept-encoding", "br")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    // Without the header, or with gzip refused, plain text as before.
    for encoding in [None, Some("gzip;q=0"), Some("br")] {
        let mut request = app.client.get(app.url("/metrics"));
        if let Some(e) = encoding {
            request = request.header("accept-encoding", e);
        }
        let res = request.send().await.unwrap();
        assert!(
            res.headers().get("content-encoding").is_none(),
            "{encoding:?}"
        );
        assert_eq!(series(&res.text().await.unwrap()), series(&plain));
    }
    app.stop().await;
}

on_both_backends!(
    every_documented_family_is_exposed_with_help,
    promtool_accepts_the_exposition,
    scrapes_are_gzipped_when_asked,
    the_classic_text_format_is_served_when_asked,
);
