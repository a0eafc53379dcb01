//! Talking to the collector: enrolment and heartbeat delivery over HTTP(S) (rustls), with
//! timeouts, an optional extra CA and proxy. Classifies answers so the run loop knows whether
//! to retry, back off, or re-enrol.

use std::time::Duration;

use greenops_protocol::{
    EnrollRequest, EnrollResponse, ErrorBody, Heartbeat, HeartbeatBatch, HeartbeatResponse,
};
use reqwest::StatusCode;

use crate::settings::AgentSettings;

/// Why a delivery did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// 401: the credential is unknown or revoked.
    #[error("the collector rejected the agent credential (401)")]
    Unauthorized,
    /// Try again later (network error, 429, 5xx), at least after the given time if the server
    /// said so.
    #[error("{reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The collector refused the heartbeats themselves (4xx other than 401/408/429).
    #[error("the collector refused the heartbeats ({status}): {body}")]
    Refused { status: u16, body: String },
}

/// Why an enrolment did not succeed, in one sentence that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The collector will not take this enrollment token or this machine: the same request
    /// can never succeed, so the agent stops asking until it is given another token.
    #[error("{0}")]
    Refused(String),
    /// The collector could not be reached or was unavailable: worth trying again.
    #[error("{0}")]
    Unavailable(String),
}

/// The human part of an error answer: the envelope's `message` (the body itself when it is not
/// the envelope), on one line and at most 300 characters.
pub fn answer_message(body: &str) -> String {
    let text = match serde_json::from_str::<ErrorBody>(body) {
        Ok(envelope) => envelope.error.message,
        Err(_) => body.to_string(),
    };
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    one_line.trim().to_string()
}

/// A request that never got an HTTP answer, in one sentence naming the likely cause and what
/// to change; `base` is the collector URL as configured.
pub fn unreachable(base: &str, error: &reqwest::Error) -> String {
    let mut chain = error.to_string();
    let mut refused = false;
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        chain.push_str(": ");
        chain.push_str(&e.to_string());
        source = e.source();
    }
    let https = base.starts_with("https://");
    if https && (chain.contains("InvalidContentType") || chain.contains("corrupt message")) {
        format!(
            "{base} does not answer HTTPS (that port speaks plain HTTP): use {} with --server, \
             or serve HTTPS on the collector (tls.cert and tls.key)",
            base.replacen("https://", "http://", 1)
        )
    } else if refused || chain.contains("Connection refused") {
        format!(
            "nothing accepts connections there (connection refused): is the collector running \
             at {base}? Start it, or correct --server (GREENOPS_SERVER_URL)"
        )
    } else if error.is_timeout() {
        format!(
            "no answer from the collector at {base} in time: is it overloaded, or does a firewall \
             drop the connection?"
        )
    } else if chain.contains("dns error") || chain.contains("failed to lookup address") {
        format!("the host name of {base} does not resolve: correct --server (GREENOPS_SERVER_URL)")
    } else if https && (chain.contains("certificate") || chain.contains("UnknownIssuer")) {
        format!(
            "the collector at {base} presented a certificate this machine does not trust \
             ({chain}): give its CA with --ca-file"
        )
    } else if !https
        && (chain.contains("connection closed before message completed")
            || chain.contains("invalid HTTP version"))
    {
        format!(
            "{base} closed the connection without an HTTP answer: if the collector serves HTTPS \
             (tls.cert), use {} with --server",
            base.replacen("http://", "https://", 1)
        )
    } else {
        format!("cannot reach the collector at {base}: {chain}")
    }
}

#[derive(Debug, Clone)]
pub struct Transport {
    client: reqwest::Client,
    base: String,
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl Transport {
    pub fn new(settings: &AgentSettings) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !settings.server_url.is_empty(),
            "no server URL configured (--server or GREENOPS_SERVER_URL)"
        );
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.request_timeout_seconds))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("greenops-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &settings.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| anyhow::anyhow!("reading {}: {e}", ca.display()))?;
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        if let Some(proxy) = &settings.proxy {
            builder = builder.proxy(reqwest::Proxy::all(proxy)?);
        }
        Ok(Self {
            client: builder.build()?,
            base: settings.server_url.trim_end_matches('/').to_string(),
        })
    }

    /// The collector's base URL, as configured (no trailing slash).
    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn enroll(&self, request: &EnrollRequest) -> Result<EnrollResponse, EnrollError> {
        let base = &self.base;
        let response = self
            .client
            .post(format!("{base}/api/v1/agents/enroll"))
            .json(request)
            .send()
            .await
            .map_err(|e| EnrollError::Unavailable(unreachable(base, &e)))?;
        let status = response.status();
        if status == StatusCode::CREATED {
            return response.json().await.map_err(|e| {
                EnrollError::Unavailable(format!(
                    "the answer of {base} to the enrolment is not a collector's ({e}): is --server \
                     the collector's URL?"
                ))
            });
        }
        let message = answer_message(&response.text().await.unwrap_or_default());
        Err(match status {
            StatusCode::UNAUTHORIZED => EnrollError::Refused(format!(
                "the collector at {base} refused the enrollment token ({message}): create one \
                 with `greenops enrollment-token create` on the collector's database \
                 (`greenops enrollment-token list` shows the existing ones) and give it with \
                 --enrollment-token-file, GREENOPS_ENROLLMENT_TOKEN or --enrollment-token"
            )),
            StatusCode::FORBIDDEN => EnrollError::Refused(format!(
                "the collector at {base} refuses this machine ({message}): ask an operator"
            )),
            StatusCode::NOT_FOUND => EnrollError::Refused(format!(
                "{base} has no enrolment endpoint (404): is --server the collector's base URL, \
                 without a path?"
            )),
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                EnrollError::Unavailable(format!(
                    "the collector at {base} cannot enrol right now ({s}: {message}); the agent \
                     tries again"
                ))
            }
            s => EnrollError::Refused(format!(
                "the collector at {base} refused the enrolment ({s}: {message})"
            )),
        })
    }

    /// Sends heartbeats (in `seq` order, at most 1000) and returns the collector's answer.
    pub async fn send(
        &self,
        token: &str,
        heartbeats: &[Heartbeat],
    ) -> Result<HeartbeatResponse, SendError> {
        let request = self
            .client
            .post(format!("{}/api/v1/heartbeats", self.base))
            .bearer_auth(token);
        let request = match heartbeats {
            [one] => request.json(one),
            many => request.json(&HeartbeatBatch {
                heartbeats: many.to_vec(),
            }),
        };
        let response = request.send().await.map_err(|e| SendError::Retry {
            reason: unreachable(&self.base, &e),
            after: None,
        })?;
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(|e| SendError::Retry {
                reason: format!("unreadable answer: {e}"),
                after: None,
            });
        }
        let after = retry_after(&response);
        let body = answer_message(&response.text().await.unwrap_or_default());
        match status {
            StatusCode::UNAUTHORIZED => Err(SendError::Unauthorized),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => Err(SendError::Retry {
                reason: format!("collector busy ({status})"),
                after,
            }),
            s if s.is_server_error() => Err(SendError::Retry {
                reason: format!("collector unavailable ({status}): {body}"),
                after,
            }),
            s => Err(SendError::Refused {
                status: s.as_u16(),
                body,
            }),
        }
    }
}
