//! HTTPS on the collector's port (`tls.cert` / `tls.key`) with a real CA and leaf certificate
//! made by the `openssl` command: the API and the admin page over TLS, the `Secure` cookie,
//! plain HTTP and untrusted clients refused, and the real agent enrolling with `--ca-file`.

use std::path::{Path, PathBuf};
use std::process::Command;

use greenops_collector::store::Role;
use serde_json::{Value, json};

use crate::helpers::{enroll_body, fresh_database, hb, past, spawn_app_with, test_settings};
use crate::postgres::missing;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA and a leaf certificate for 127.0.0.1 signed by it.
fn certificates() -> Option<PathBuf> {
    if Command::new("openssl").arg("version").output().is_err() {
        missing("the openssl command (Debian package openssl)");
        return None;
    }
    let dir = std::env::temp_dir().join(format!("greenops-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=GreenOps test CA",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
    Some(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_port_serves_https_when_configured() {
    let Some(db) = fresh_database().await else {
        return;
    };
    let Some(dir) = certificates() else {
        return;
    };
    let mut settings = test_settings(&db);
    settings.tls.cert = Some(dir.join("leaf.pem"));
    settings.tls.key = Some(dir.join("leaf.key"));
    let app = spawn_app_with(settings).await;
    let port = app.base.rsplit(':').next().unwrap().to_string();
    let base = format!("https://127.0.0.1:{port}");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();

    // The admin page, the agent API and a session, all over HTTPS.
    let page = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.version(), reqwest::Version::HTTP_11);
    let token = app.enrollment_token("default", "tls").await;
    let enrolled: Value = client
        .post(format!("{base}/api/v1/agents/enroll"))
        .json(&enroll_body(&token, "machine-key-over-tls-0001"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agent_token = enrolled["agent_token"].as_str().unwrap();
    let res = client
        .post(format!("{base}/api/v1/heartbeats"))
        .bearer_auth(agent_token)
        .json(&hb(1, past(1), Some(5.0)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let store = greenops_collector::open_store(&test_settings(&app.db_url))
        .await
        .unwrap();
    let hash = greenops_collector::auth::hash_password("a long password!").unwrap();
    store
        .create_user("admin", &hash, Role::Admin, 0)
        .await
        .unwrap();
    store.close().await;
    let login = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": "a long password!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.ends_with("; Secure"), "{cookie}");

    // Plain HTTP on the TLS port, and clients that do not trust the CA, get nothing.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let untrusting = reqwest::Client::builder().build().unwrap();
    let err = untrusting
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").to_lowercase().contains("certificate"),
        "{err:?}"
    );

    // The real agent enrols over HTTPS with --ca-file, and refuses without it.
    let agent = crate::agent::agent_binary();
    if agent.exists() {
        let state = dir.join("agent-state");
        let run = |ca: bool| {
            let mut c = Command::new(&agent);
            c.args(["enroll", "--server", &base, "--enrollment-token", &token])
                .arg("--state-dir")
                .arg(&state)
                .env("GREENOPS_AGENT_CONFIG", "/dev/null");
            if ca {
                c.arg("--ca-file").arg(dir.join("ca.pem"));
            }
            c.output().unwrap()
        };
        let refused = run(false);
        assert!(
            !refused.status.success(),
            "the agent must not trust an unknown CA"
        );
        let enrolled = run(true);
        assert!(
            enrolled.status.success()
                && String::from_utf8_lossy(&enrolled.stdout).contains("enrolled as machine"),
            "{}{}",
            String::from_utf8_lossy(&enrolled.stdout),
            String::from_utf8_lossy(&enrolled.stderr)
        );
    } else {
        missing(&format!("the greenops-agent binary at {}", agent.display()));
    }
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn half_a_tls_configuration_is_refused() {
    let err = greenops_collector::settings::Settings::from_toml("[tls]\ncert = \"/x.pem\"\n")
        .unwrap_err();
    assert!(err.to_string().contains("tls.key"), "{err}");
}

/// The collector reaches PostgreSQL over TLS (`sslmode=verify-full` with the CA in
/// `sslrootcert`), and refuses a server it cannot verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_verified_tls() {
    let Some(dir) = certificates() else {
        return;
    };
    let Some(cluster) = crate::postgres::Cluster::start_with_tls(Some((
        &dir.join("leaf.pem"),
        &dir.join("leaf.key"),
    ))) else {
        missing("PostgreSQL server binaries (initdb, pg_ctl)");
        return;
    };
    let base = cluster.url("postgres");
    let url = format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        dir.join("ca.pem").display()
    );
    // The connection really is TLS.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(ssl);
    conn.close().await.unwrap();
    // The whole collector on it: migrations, enrolment, a committed heartbeat.
    let app = spawn_app_with(test_settings(&url)).await;
    let machine = app.new_machine().await;
    let answer = app
        .send(&machine.agent_token, &hb(1, past(1), Some(5.0)))
        .await;
    assert_eq!(answer["accepted"], 1);
    app.stop().await;
    // A CA that did not sign the server's certificate: refused.
    let wrong = format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        dir.join("leaf.pem").display()
    );
    assert!(sqlx::PgConnection::connect(&wrong).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
