//! Talking to the collector: enrolment and heartbeat delivery over HTTP(S) (rustls), with
//! timeouts, an optional extra CA and proxy. Classifies answers so the run loop knows whether
//! to retry, back off, or re-enrol.

use std::time::Duration;

use greenops_protocol::{
    EnrollRequest, EnrollResponse, Heartbeat, HeartbeatBatch, HeartbeatResponse,
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

    pub async fn enroll(&self, request: &EnrollRequest) -> anyhow::Result<EnrollResponse> {
        let response = self
            .client
            .post(format!("{}/api/v1/agents/enroll", self.base))
            .json(request)
            .send()
            .await?;
        let status = response.status();
        if status != StatusCode::CREATED {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("enrolment refused ({status}): {body}");
        }
        Ok(response.json().await?)
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
            reason: format!("cannot reach the collector: {e}"),
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
        let body = response.text().await.unwrap_or_default();
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
