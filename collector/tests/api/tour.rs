//! The README's first hour, run as written: `serve --demo` as `make run` starts it (in an empty
//! checkout-like directory whose `./target/release` holds the binaries under test), the banner
//! it prints at every start, then the quick tour's shell blocks — whose commands find the
//! demo's database by themselves — with the worked example's figures on `/metrics`, the real
//! agent with its token from a file, and the admin password from the banner.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::agent::agent_binary;
use crate::helpers::{free_port, poll_until, wait_until};
use crate::postgres::missing;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `sh` code blocks of the README section `heading`, in order.
fn shell_blocks(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let section = readme
        .split_once(heading)
        .unwrap_or_else(|| panic!("README has no {heading}"))
        .1;
    let section = section.split("\n## ").next().unwrap();
    section
        .split("```sh\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().to_string())
        .collect()
}

/// A collector process started as `make run` does, with what it printed so far.
struct Demo {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn drain(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut t = sink.lock().unwrap();
            t.push_str(&line);
            t.push('\n');
        }
    });
    text
}

impl Demo {
    /// `./target/release/greenops serve --demo` in `dir`, on the address in GREENOPS_LISTEN
    /// (the Makefile passes no --listen unless LISTEN is given).
    fn start(dir: &Path, port: u16) -> Self {
        let mut child = clean(Command::new(dir.join("target/release/greenops")))
            .args(["serve", "--demo"])
            .current_dir(dir)
            .env("GREENOPS_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        Demo {
            child,
            stdout,
            stderr,
        }
    }

    /// The banner's value after `label:`, once printed.
    fn banner(&self, label: &str) -> String {
        let found = poll_until(Duration::from_secs(60), || {
            self.stderr.lock().unwrap().contains("    binaries:")
        });
        let stderr = self.stderr.lock().unwrap().clone();
        assert!(found, "no banner:\n{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{label}:")))
            .unwrap_or_else(|| panic!("no {label} in:\n{stderr}"));
        line.split_whitespace()
            .nth(label.split(' ').count())
            .unwrap()
            .to_string()
    }

    fn stop(mut self) -> (String, String) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(
            poll_until(Duration::from_secs(20), || self
                .child
                .try_wait()
                .unwrap()
                .is_some()),
            "the demo ignored SIGTERM"
        );
        let out = self.stdout.lock().unwrap().clone();
        let err = self.stderr.lock().unwrap().clone();
        (out, err)
    }
}

/// The developer's GREENOPS_* and DATABASE_URL kept out.
fn clean(mut command: Command) -> Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("GREENOPS_") || k == "DATABASE_URL" {
            command.env_remove(k);
        }
    }
    command
}

/// Runs one of the README's blocks with bash in `dir`, stopping at the first failing command.
fn bash(dir: &Path, block: &str) -> (String, String) {
    let out = clean(Command::new("bash"))
        .args(["-euo", "pipefail", "-c", block])
        .current_dir(dir)
        .env_remove("DISPLAY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the tour failed ({:?}):\n{block}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// The worked example of "Accounting in brief", as the tour's last command prints it.
fn assert_worked_example(stdout: &str) {
    for (family, value) in [
        ("observed_seconds_total", "120.0"),
        ("idle_seconds_total", "60.0"),
        ("energy_joules_total", "11100.0"),
        ("idle_energy_joules_total", "3900.0"),
        ("avoidable_energy_joules_total", "3780.0"),
        ("idle_energy_cost_total", "0.00013"),
        ("idle_co2_grams_total", "0.455"),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("greenops_machine_{family}{{")))
            .unwrap_or_else(|| panic!("no {family} in:\n{stdout}"));
        assert_eq!(line.rsplit(' ').next(), Some(value), "{line}");
        assert!(line.contains("department=\"finance\""), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_works_as_written_against_make_run() {
    if Command::new("curl").arg("--version").output().is_err() {
        missing("curl (Debian package curl)");
        return;
    }
    if !agent_binary().exists() {
        missing(&format!(
            "the greenops-agent binary at {}",
            agent_binary().display()
        ));
        return;
    }
    // A checkout as a new user has it after `make run`: ./target/release/{greenops,greenops-agent}.
    let dir = std::env::temp_dir().join(format!("greenops-tour-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("target")).unwrap();
    let binaries = Path::new(env!("CARGO_BIN_EXE_greenops")).parent().unwrap();
    std::os::unix::fs::symlink(binaries, dir.join("target/release")).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    let demo = Demo::start(&dir, port);
    let password = demo.banner("password");
    let token = demo.banner("enrollment token");
    assert!(token.starts_with("gok_enroll_"), "{token}");
    assert!(demo.banner("database").ends_with("/data/demo.db"));
    let ready = wait_until(Duration::from_secs(30), async || {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "the demo did not become ready");

    // The admin password printed works, and so does the token for agents of one's own.
    let login = |password: String| {
        let client = client.clone();
        let base = base.clone();
        async move {
            client
                .post(format!("{base}/api/v1/auth/login"))
                .json(&serde_json::json!({"username": "admin", "password": password}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(login(password.clone()).await, 200);
    let res = client
        .post(format!("{base}/api/v1/agents/enroll"))
        .json(&crate::helpers::enroll_body(
            &token,
            "machine-key-tour-own-0001",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    // The tour, as written (only the port is this test's).
    let blocks = shell_blocks("## Quick tour");
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    let tour = blocks[0].replace("9850", &port.to_string());
    let (stdout, stderr) = bash(&dir, &tour);
    assert_worked_example(&stdout);
    assert!(
        stderr.contains(&format!(
            "/data/demo.db (the one of the demo collector running at {base}"
        )),
        "the commands did not use the demo's database:\n{stderr}"
    );
    assert!(stderr.contains("expires in 7d"), "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(" finance ") && l.ends_with("usable")),
        "enrollment-token list:\n{stdout}"
    );
    // Run again, the figures stay those of the worked example.
    let (again, _) = bash(&dir, &tour);
    assert_worked_example(&again);

    // The real agent, with the token from the file the tour wrote.
    let agent_line = blocks[1].trim().replace("9850", &port.to_string());
    let mut agent = clean(Command::new("bash"))
        .args(["-c", &format!("exec {agent_line}")])
        .current_dir(&dir)
        .env_remove("DISPLAY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let agent_log = drain(agent.stderr.take().unwrap());
    let status = || {
        let out = Command::new(dir.join("target/release/greenops-agent"))
            .args(["status", "--state-dir", "data/agent"])
            .current_dir(&dir)
            .env("GREENOPS_AGENT_CONFIG", "/dev/null")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let delivered = poll_until(Duration::from_secs(30), || {
        let s = status();
        s.contains("enrolled as machine") && !s.contains("last delivery:   never")
    });
    assert!(delivered, "{}\n{}", status(), agent_log.lock().unwrap());
    assert!(
        status().contains(&format!("server:          {base} (used by the last run")),
        "{}",
        status()
    );
    Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(poll_until(Duration::from_secs(10), || agent
        .try_wait()
        .unwrap()
        .is_some()));

    // A restart prints a new password that works; the old one no longer does.
    let (stdout, stderr) = demo.stop();
    assert!(
        !stdout.contains(&password),
        "the password went into the log"
    );
    assert!(
        !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
        "colour codes into a pipe"
    );
    assert!(
        stdout.contains(&format!("address=127.0.0.1:{port}")),
        "GREENOPS_LISTEN not honoured:\n{stdout}"
    );
    let demo = Demo::start(&dir, port);
    let second = demo.banner("password");
    assert_ne!(second, password);
    let ready = wait_until(Duration::from_secs(30), async || {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready);
    assert_eq!(login(second).await, 200);
    assert_eq!(login(password).await, 401);
    demo.stop();
    assert!(
        !dir.join("data/collector.json").exists(),
        "the stopped demo is still announced"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// What the README points at exists in the repository, and it names every package `.ci/run`
/// installs and every `greenops` command.
#[test]
fn the_readme_names_real_files_every_test_package_and_every_command() {
    let root = repository();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut missing_files = Vec::new();
    for link in readme.split("](").skip(1) {
        let target = link.split([')', '#']).next().unwrap();
        if !target.starts_with("http") && !target.is_empty() && !root.join(target).exists() {
            missing_files.push(target.to_string());
        }
    }
    let top: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "target" && n != "data")
        .collect();
    for quoted in readme.split('`').skip(1).step_by(2) {
        let first = quoted.split('/').next().unwrap();
        if quoted.contains('/')
            && !quoted.contains(' ')
            && !quoted.contains('…')
            && top.iter().any(|t| t == first)
            && !root.join(quoted).exists()
        {
            missing_files.push(quoted.to_string());
        }
    }
    assert!(
        missing_files.is_empty(),
        "README points at files not in the repository: {missing_files:?}"
    );

    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    let packages: Vec<&str> = ci
        .split("missing+=(")
        .skip(1)
        .map(|rest| rest.split(')').next().unwrap())
        .collect();
    assert!(packages.len() >= 10, "{packages:?}");
    let unnamed: Vec<&&str> = packages
        .iter()
        .filter(|p| !readme.contains(&format!("`{p}`")))
        .collect();
    assert!(
        unnamed.is_empty(),
        "README does not name these packages .ci/run installs: {unnamed:?}"
    );
    for pypi in ["schemathesis", "openapi-spec-validator"] {
        assert!(
            ci.contains(pypi) && readme.contains(&format!("`{pypi}`")),
            "{pypi}"
        );
    }

    let help = Command::new(env!("CARGO_BIN_EXE_greenops"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.contains(&"healthcheck"), "{commands:?}");
    let undocumented: Vec<&&str> = commands
        .iter()
        .filter(|c| !readme.contains(&format!("greenops {c}")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "commands missing from the README: {undocumented:?}"
    );
    for sub in ["enrollment-token list", "enrollment-token revoke"] {
        assert!(readme.contains(&format!("greenops {sub}")), "{sub}");
    }
}
