//! The Prometheus ecosystem pack, checked statically: rules with promtool, dashboards linted,
//! the compose stack validated as far as possible without a Docker engine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::postgres::missing;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn yaml(path: &Path) -> serde_yaml::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

fn files(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

/// Runs a tool from the Prometheus packages; `None` when it is not installed (reported).
fn tool(program: &str, args: &[&str], dir: &Path) -> Option<(bool, String)> {
    match Command::new(program).args(args).current_dir(dir).output() {
        Ok(out) => Some((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )),
        Err(_) => {
            missing(&format!(
                "{program} (Debian packages prometheus / prometheus-alertmanager)"
            ));
            None
        }
    }
}

#[test]
fn rules_pass_promtool_check_and_every_unit_test() {
    let rules: Vec<String> = files("alerts", ".yml")
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert!(rules.len() >= 2);
    let mut args = vec!["check", "rules"];
    args.extend(rules.iter().map(String::as_str));
    let Some((ok, out)) = tool("promtool", &args, &repo()) else {
        return;
    };
    assert!(ok, "promtool check rules:\n{out}");
    let tests = files("alerts/tests", ".test.yml");
    assert!(tests.len() >= 3);
    for t in tests {
        let (ok, out) = tool("promtool", &["test", "rules", t.to_str().unwrap()], &repo()).unwrap();
        assert!(ok, "promtool test rules {}:\n{out}", t.display());
    }
}

/// Every alert named like a mixin alert, with severity, the three annotations, a runbook
/// section, and both a "not yet" and a "fires" unit test.
#[test]
fn alerts_follow_the_house_conventions() {
    let runbooks = std::fs::read_to_string(repo().join("alerts/runbooks.md")).unwrap();
    let tests: String = files("alerts/tests", ".test.yml")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let rules = yaml(&repo().join("alerts/greenops-alerts.yml"));
    let mut names = BTreeSet::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"]
                .as_str()
                .expect("only alerts in greenops-alerts.yml");
            assert!(
                name.starts_with("GreenOps") && !name.contains('_'),
                "{name}"
            );
            assert!(names.insert(name.to_string()), "{name} twice");
            let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
            assert!(
                ["info", "warning", "critical"].contains(&severity),
                "{name}: severity {severity:?}"
            );
            for key in ["summary", "description", "runbook_url"] {
                assert!(
                    rule["annotations"][key]
                        .as_str()
                        .is_some_and(|s| !s.is_empty()),
                    "{name}: no {key}"
                );
            }
            let anchor = name.to_lowercase();
            assert_eq!(
                rule["annotations"]["runbook_url"].as_str(),
                Some(format!("alerts/runbooks.md#{anchor}").as_str())
            );
            assert!(
                runbooks.contains(&format!("\n## {name}\n")),
                "no runbook section for {name}"
            );
            let cases = tests.matches(&format!("alertname: {name}\n")).count();
            assert!(cases >= 2, "{name} has {cases} test cases");
        }
    }
    assert_eq!(names.len(), 9, "{names:?}");
    let recording = yaml(&repo().join("alerts/greenops-rules.yml"));
    for group in recording["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let record = rule["record"].as_str().unwrap();
            let parts: Vec<&str> = record.split(':').collect();
            assert_eq!(parts.len(), 3, "{record} is not level:metric:operation");
            assert!(parts[1].starts_with("greenops_"), "{record}");
        }
    }
}

/// All PromQL expressions of a dashboard, with their panel titles.
pub fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                panel["title"].as_str().unwrap_or_default().to_string(),
                t["expr"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

pub fn dashboards() -> Vec<(PathBuf, Value)> {
    files("dashboards", ".json")
        .into_iter()
        .map(|p| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, v)
        })
        .collect()
}

#[test]
fn dashboards_pass_the_lint() {
    let all = dashboards();
    let uids: BTreeSet<&str> = all
        .iter()
        .map(|(_, d)| d["uid"].as_str().unwrap())
        .collect();
    assert_eq!(
        uids,
        BTreeSet::from(["greenops-collector", "greenops-fleet", "greenops-machine"]),
        "uids are stable contracts"
    );
    for (path, d) in &all {
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            d["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("GreenOps / ")),
            "{name}"
        );
        let vars = d["templating"]["list"].as_array().unwrap();
        assert!(
            vars.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{name}: no datasource variable"
        );
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert_eq!(
                v["datasource"]["uid"], "${datasource}",
                "{name}: variable {}",
                v["name"]
            );
        }
        let text = serde_json::to_string(d).unwrap();
        assert!(
            !text.contains("\"datasource\":\"Prometheus\""),
            "{name}: hard-coded data source"
        );
        let panels = d["panels"].as_array().unwrap();
        assert!(panels.len() >= 5, "{name}");
        let mut ids = BTreeSet::new();
        for p in panels {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{name}: untitled panel");
            assert!(
                ids.insert(p["id"].as_i64().unwrap()),
                "{name}: duplicate panel id"
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}/{title}");
            assert!(
                p["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .is_some_and(|u| !u.is_empty()),
                "{name}/{title}: no unit"
            );
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}/{title}: no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}/{title}");
                let expr = t["expr"].as_str().unwrap_or_default();
                assert!(!expr.trim().is_empty(), "{name}/{title}: empty query");
                // Rates over raw counters follow Grafana's interval; fixed windows are only
                // for per-day bars and recording rules.
                if expr.contains("rate(") {
                    assert!(
                        expr.contains("$__rate_interval") || expr.contains(":rate"),
                        "{name}/{title}: rate() without $__rate_interval: {expr}"
                    );
                }
            }
        }
    }
}

#[test]
fn compose_stack_is_consistent() {
    let dir = repo().join("compose");
    let compose = yaml(&dir.join("docker-compose.yml"));
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "alertmanager",
            "collector",
            "grafana",
            "postgres",
            "prometheus"
        ])
    );
    for (name, service) in services {
        let name = name.as_str().unwrap();
        assert!(
            service["healthcheck"]["test"].is_sequence(),
            "{name}: no healthcheck"
        );
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let host = volume.as_str().unwrap().split(':').next().unwrap();
            if !host.starts_with('.') {
                continue; // a named volume
            }
            let path = dir.join(host);
            let example = PathBuf::from(format!("{}.example", path.display()));
            assert!(
                path.exists() || example.exists(),
                "{name} mounts {host}, which does not exist (nor its .example)"
            );
        }
    }
    assert!(dir.join("Dockerfile").exists() && dir.join(".env.example").exists());
    let env = std::fs::read_to_string(dir.join(".env.example")).unwrap();
    for var in [
        "POSTGRES_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
        "GREENOPS_METRICS_TOKEN",
    ] {
        assert!(
            env.contains(&format!("{var}=")),
            "{var} missing from .env.example"
        );
    }
    let dockerfile = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("USER greenops") && dockerfile.contains("HEALTHCHECK"));

    // Prometheus sees its config and the rules as the container mounts them.
    let layout =
        std::env::temp_dir().join(format!("greenops-prom-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(layout.join("alerts")).unwrap();
    std::fs::copy(dir.join("prometheus.yml"), layout.join("prometheus.yml")).unwrap();
    std::fs::copy(
        dir.join("secrets/metrics-token.example"),
        layout.join("metrics-token"),
    )
    .unwrap();
    for rules in files("alerts", ".yml") {
        std::fs::copy(
            &rules,
            layout.join("alerts").join(rules.file_name().unwrap()),
        )
        .unwrap();
    }
    let Some((ok, out)) = tool("promtool", &["check", "config", "prometheus.yml"], &layout) else {
        return;
    };
    assert!(ok, "promtool check config:\n{out}");
    assert!(
        out.contains("2 rules files") || out.contains("SUCCESS"),
        "{out}"
    );
    let Some((ok, out)) = tool("amtool", &["check-config", "alertmanager.yml"], &dir) else {
        return;
    };
    assert!(ok, "amtool check-config:\n{out}");
    std::fs::remove_dir_all(&layout).ok();
}
