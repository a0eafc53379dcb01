//! A small W3C WebDriver client for the browser tests: Debian's `chromedriver` driving real
//! headless Chromium. Only the commands the tests need.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{free_port, wait_until};

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(15);

/// A headless Chromium session.
#[derive(Debug)]
pub struct Browser {
    client: reqwest::Client,
    driver_url: String,
    session: String,
    driver: Child,
    profile: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium; `None` (a visible skip, or a failure
    /// under CI) when they are not installed.
    pub async fn start() -> Option<Browser> {
        let (Some(driver_bin), Some(chromium)) = (which("chromedriver"), which("chromium")) else {
            crate::postgres::missing(
                "chromium and chromium-driver (apt install chromium chromium-driver)",
            );
            return None;
        };
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let client = reqwest::Client::new();
        let driver_url = format!("http://127.0.0.1:{port}");
        let started = wait_until(WAIT, async || {
            let Ok(res) = client.get(format!("{driver_url}/status")).send().await else {
                return false;
            };
            let body: Value = res.json().await.unwrap_or_default();
            body["value"]["ready"] == true
        })
        .await;
        assert!(started, "chromedriver did not start");
        let profile = std::env::temp_dir().join(format!(
            "greenops-chromium-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1400,1000",
                         format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let res: Value = client
            .post(format!("{driver_url}/session"))
            .json(&caps)
            .send()
            .await
            .expect("creating a WebDriver session")
            .json()
            .await
            .unwrap();
        let session = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {res}"))
            .to_string();
        Some(Browser {
            client,
            driver_url,
            session,
            driver,
            profile,
        })
    }

    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.driver_url, self.session);
        let mut req = self.client.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("talking to chromedriver");
        let ok = res.status().is_success();
        let value: Value = res.json::<Value>().await.unwrap_or_default()["value"].take();
        if ok { Ok(value) } else { Err(value) }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    async fn try_find(&self, css: &str) -> Option<String> {
        self.command(
            reqwest::Method::POST,
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )
        .await
        .ok()
        .and_then(|v| v[ELEMENT].as_str().map(str::to_string))
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> String {
        let mut found = None;
        let appeared = wait_until(WAIT, async || {
            found = self.try_find(css).await;
            found.is_some()
        })
        .await;
        assert!(appeared, "no element matches {css}");
        found.unwrap()
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    /// Replaces the value of an input.
    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({"text": text}))
            .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.command(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs a script (`return …`) in the page.
    pub async fn script(&self, js: &str) -> Value {
        self.post("/execute/sync", json!({"script": js, "args": []}))
            .await
    }

    /// Runs an async script; it answers by calling `done(value)`.
    pub async fn script_async(&self, js: &str) -> Value {
        let script = format!("const done = arguments[arguments.length - 1]; {js}");
        self.post("/execute/async", json!({"script": script, "args": []}))
            .await
    }

    /// Waits until `js` (an expression) is truthy in the page.
    pub async fn wait_for(&self, js: &str) {
        let held = wait_until(WAIT, async || {
            self.script(&format!("return !!({js});")).await == true
        })
        .await;
        if !held {
            let page = self
                .script("return document.body.innerText.slice(0, 2000);")
                .await;
            panic!(
                "timed out waiting for {js}; the page reads:\n{}",
                page.as_str().unwrap_or_default()
            );
        }
    }

    /// Resizes the window (e.g. to a phone's width).
    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// Sends a Chrome DevTools Protocol command (e.g. `Emulation.setLocaleOverride`) through
    /// chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.post("/goog/cdp/execute", json!({"cmd": cmd, "params": params}))
            .await
    }

    /// Saves a PNG of the viewport under `target/screenshots/` for reviewers.
    pub async fn screenshot(&self, name: &str) {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await
            .unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    pub async fn quit(mut self) {
        let _ = self.command(reqwest::Method::DELETE, "", None).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
