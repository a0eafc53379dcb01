//! Throwaway PostgreSQL clusters for the tests, started from the installed server binaries
//! (`initdb`, `pg_ctl`) in a temporary directory on a free port. PostgreSQL refuses to run as
//! root, so as root the server runs as `nobody`. A watchdog process stops the cluster and
//! removes its files when the test process exits, however it exits.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A running cluster owned by this test process.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    run_as_nobody: bool,
    /// Extra server options (e.g. TLS).
    options: String,
}

/// Where the server binaries are: `PATH` first, then Debian's versioned directories.
fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v pg_ctl"])
        .output()
        && out.status.success()
    {
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Ok(real) = std::fs::canonicalize(&path)
            && let Some(parent) = real.parent()
            && parent.join("initdb").exists()
        {
            return Some(parent.to_path_buf());
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

use crate::helpers::free_port;

impl Cluster {
    /// Initialises and starts a new cluster; `None` when no server binaries are installed.
    pub fn start() -> Option<Cluster> {
        Self::start_with_tls(None)
    }

    /// A cluster that also accepts TLS connections with this PEM certificate and key.
    pub fn start_with_tls(tls: Option<(&std::path::Path, &std::path::Path)>) -> Option<Cluster> {
        let bin = find_bin_dir()?;
        let run_as_nobody = is_root();
        let dir = std::env::temp_dir().join(format!(
            "greenops-pg-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("creating the cluster directory");
        if run_as_nobody {
            let ok = Command::new("chown")
                .args(["nobody:nogroup", dir.to_str().unwrap()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown of {} to nobody failed", dir.display());
        }
        let mut options = String::new();
        if let Some((cert, key)) = tls {
            // The server reads them as its own user; the key must be private to it.
            let (cert_at, key_at) = (dir.join("server.crt"), dir.join("server.key"));
            std::fs::copy(cert, &cert_at).expect("copying the certificate");
            std::fs::copy(key, &key_at).expect("copying the key");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_at, std::fs::Permissions::from_mode(0o600)).unwrap();
            if run_as_nobody {
                for f in [&cert_at, &key_at] {
                    let ok = Command::new("chown")
                        .args(["nobody:nogroup", f.to_str().unwrap()])
                        .status()
                        .is_ok_and(|s| s.success());
                    assert!(ok, "chown of {} failed", f.display());
                }
            }
            options = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert_at.display(),
                key_at.display()
            );
        }
        let cluster = Cluster {
            dir,
            port: free_port(),
            bin,
            run_as_nobody,
            options,
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        cluster.spawn_watchdog();
        cluster.start_server();
        Some(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.run_as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
                .arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts (or restarts) the server and waits until it accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 \
             -c fsync=off -c full_page_writes=off \
             -c shared_buffers=64MB{}",
            self.port,
            self.dir.display(),
            self.options
        );
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data_dir().to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the server at once (existing connections break), keeping its data.
    pub fn stop_server(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data_dir().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the cluster and deletes its files once this process has exited.
    fn spawn_watchdog(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = if self.run_as_nobody {
            format!(
                "setpriv --reuid=nobody --regid=nogroup --clear-groups -- {} -D {} -m immediate stop",
                pg_ctl.display(),
                self.data_dir().display()
            )
        } else {
            format!(
                "{} -D {} -m immediate stop",
                pg_ctl.display(),
                self.data_dir().display()
            )
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop}; rm -rf {dir}",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        // Deliberately detached: it must outlive this process.
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning the cluster watchdog");
    }
}

/// The server all ordinary tests share (each test gets its own database on it).
/// `GREENOPS_TEST_DATABASE_URL` names an existing server instead.
pub enum Server {
    Ours(Cluster),
    External(String),
}

static SHARED: OnceLock<Option<Server>> = OnceLock::new();

/// The shared server, or `None` when PostgreSQL is not available here. In CI
/// (`CI=true`) a missing PostgreSQL is a failure, never a silent skip.
pub fn shared() -> Option<&'static Server> {
    SHARED
        .get_or_init(|| {
            if let Ok(url) = std::env::var("GREENOPS_TEST_DATABASE_URL") {
                return Some(Server::External(url));
            }
            let cluster = Cluster::start();
            if cluster.is_none() {
                missing("PostgreSQL server binaries (initdb, pg_ctl)");
            }
            cluster.map(Server::Ours)
        })
        .as_ref()
}

/// Reports a missing dependency: a panic under CI, a visible skip elsewhere.
pub fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{what} not available, and CI=true forbids skipping");
    }
    eprintln!("SKIPPED: {what} not available (set CI=true to make this a failure)");
}

impl Server {
    /// URL of the maintenance database, for CREATE DATABASE.
    pub fn admin_url(&self) -> String {
        match self {
            Server::Ours(c) => c.url("postgres"),
            Server::External(url) => url.clone(),
        }
    }

    /// URL of a new, empty database on this server.
    pub async fn fresh_database(&self) -> String {
        use sqlx::Connection;
        let name = format!("greenops_test_{}", uuid::Uuid::new_v4().simple());
        let admin = self.admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connecting to the test server");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("creating a test database");
        conn.close().await.ok();
        replace_database(&admin, &name)
    }
}

/// `url` with its database name replaced by `name`.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}
