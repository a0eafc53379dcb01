//! Agent settings: defaults → `agent.toml` in the platform's config location → `GREENOPS_*`
//! environment → flags (DESIGN §7).

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use greenops_runtime::secret::serialize_exposed;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Every setting of the agent; the enrollment token is a [`SecretString`] (redacted in `Debug`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    /// Collector base URL, e.g. `https://greenops.example.org`.
    pub server_url: String,
    /// Used to enrol (and to re-enrol when the credential is rejected).
    #[serde(serialize_with = "serialize_exposed")]
    pub enrollment_token: Option<SecretString>,
    /// A file holding the enrollment token (`-`: standard input), so it never shows in `ps`.
    pub enrollment_token_file: Option<PathBuf>,
    /// Where the identity, credential, `seq` and spool live.
    pub state_dir: PathBuf,
    pub heartbeat_interval_seconds: u64,
    pub sample_interval_seconds: u64,
    /// Extra CA certificate (PEM) to trust, for private PKIs.
    pub ca_file: Option<PathBuf>,
    /// HTTP(S) proxy URL.
    pub proxy: Option<String>,
    /// Spool bounds while the collector is unreachable.
    pub spool_max_bytes: u64,
    pub spool_max_age_seconds: u64,
    /// Per-request timeout.
    pub request_timeout_seconds: u64,
}

/// The platform's configuration file.
pub fn default_config_path() -> PathBuf {
    if cfg!(windows) {
        PathBuf::from(r"C:\ProgramData\GreenOps\agent.toml")
    } else if cfg!(target_os = "macos") {
        PathBuf::from("/Library/Application Support/GreenOps/agent.toml")
    } else {
        PathBuf::from("/etc/greenops/agent.toml")
    }
}

fn default_state_dir() -> PathBuf {
    if cfg!(windows) {
        PathBuf::from(r"C:\ProgramData\GreenOps\state")
    } else if cfg!(target_os = "macos") {
        PathBuf::from("/Library/Application Support/GreenOps/state")
    } else {
        PathBuf::from("/var/lib/greenops-agent")
    }
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            server_url: String::new(),
            enrollment_token: None,
            enrollment_token_file: None,
            state_dir: default_state_dir(),
            heartbeat_interval_seconds: 60,
            sample_interval_seconds: 5,
            ca_file: None,
            proxy: None,
            spool_max_bytes: 50 * 1024 * 1024,
            spool_max_age_seconds: 7 * 24 * 3600,
            request_timeout_seconds: 20,
        }
    }
}

/// Values from the command line (applied last).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Flags {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_exposed"
    )]
    pub enrollment_token: Option<SecretString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment_token_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_interval_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
}

impl AgentSettings {
    /// Layers the sources; `config` overrides the platform default file (a missing default
    /// file is fine, a missing explicit one is an error).
    pub fn load(config: Option<&Path>, flags: &Flags) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(AgentSettings::default()));
        match config {
            Some(path) => {
                anyhow::ensure!(
                    path.exists(),
                    "configuration file {} does not exist",
                    path.display()
                );
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file(default_config_path())),
        }
        figment = figment
            .merge(Env::prefixed("GREENOPS_").filter_map(|key| {
                let key = key.as_str().to_ascii_lowercase();
                match key.as_str() {
                    "server_url"
                    | "enrollment_token"
                    | "enrollment_token_file"
                    | "state_dir"
                    | "heartbeat_interval_seconds"
                    | "sample_interval_seconds"
                    | "ca_file"
                    | "proxy" => Some(key.into()),
                    _ => None,
                }
            }))
            .merge(Serialized::defaults(flags));
        let settings: AgentSettings = figment
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid agent configuration: {e}"))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Reads the enrollment token from `enrollment_token_file` when one is named (first
    /// non-empty line; `-` reads standard input). Only `run` and `enroll` call this: `status`
    /// never waits on standard input.
    pub fn read_token_file(&mut self) -> anyhow::Result<()> {
        let Some(path) = self.enrollment_token_file.clone() else {
            return Ok(());
        };
        anyhow::ensure!(
            self.enrollment_token.is_none(),
            "give the enrollment token once: either --enrollment-token (GREENOPS_ENROLLMENT_TOKEN) \
             or --enrollment-token-file (GREENOPS_ENROLLMENT_TOKEN_FILE)"
        );
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).map_err(|e| {
                anyhow::anyhow!("cannot read the enrollment token from standard input: {e}")
            })?
        } else {
            std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the enrollment token file {}: {e}",
                    path.display()
                )
            })?
        };
        let token = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the enrollment token file {} is empty",
                    if path.as_os_str() == "-" {
                        "(standard input)".to_string()
                    } else {
                        path.display().to_string()
                    }
                )
            })?;
        self.enrollment_token = Some(token.to_string().into());
        Ok(())
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.heartbeat_interval_seconds >= 1,
            "heartbeat_interval_seconds must be at least 1"
        );
        anyhow::ensure!(
            self.sample_interval_seconds >= 1,
            "sample_interval_seconds must be at least 1"
        );
        anyhow::ensure!(
            self.request_timeout_seconds >= 1,
            "request_timeout_seconds must be at least 1"
        );
        if !self.server_url.is_empty() {
            anyhow::ensure!(
                self.server_url.starts_with("http://") || self.server_url.starts_with("https://"),
                "server_url must start with http:// or https://"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the error type
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "agent.toml",
                "server_url = \"http://file:9850\"\nheartbeat_interval_seconds = 30\nsample_interval_seconds = 3\n",
            )?;
            jail.set_env("GREENOPS_HEARTBEAT_INTERVAL_SECONDS", "20");
            jail.set_env("GREENOPS_DATABASE_URL", "not an agent setting");
            let path = jail.directory().join("agent.toml");
            let s =
                AgentSettings::load(Some(&path), &Flags::default()).map_err(|e| e.to_string())?;
            assert_eq!(s.server_url, "http://file:9850");
            assert_eq!(s.heartbeat_interval_seconds, 20);
            assert_eq!(s.sample_interval_seconds, 3);
            let flags = Flags {
                heartbeat_interval_seconds: Some(10),
                server_url: Some("http://flag:9850".into()),
                ..Flags::default()
            };
            let s = AgentSettings::load(Some(&path), &flags).map_err(|e| e.to_string())?;
            assert_eq!(
                (s.heartbeat_interval_seconds, s.server_url.as_str()),
                (10, "http://flag:9850")
            );
            Ok(())
        });
    }

    #[test]
    fn the_token_can_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("agent-tok-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "\n  gok_enroll_from_file  \n").unwrap();
        let mut s = AgentSettings {
            enrollment_token_file: Some(file.clone()),
            ..AgentSettings::default()
        };
        s.read_token_file().unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(
            s.enrollment_token.as_ref().map(|t| t.expose_secret()),
            Some("gok_enroll_from_file")
        );
        // Both at once is ambiguous.
        let err = s.read_token_file().unwrap_err().to_string();
        assert!(err.contains("give the enrollment token once"), "{err}");
        std::fs::write(&file, "\n").unwrap();
        let mut s = AgentSettings {
            enrollment_token_file: Some(file.clone()),
            ..AgentSettings::default()
        };
        let err = s.read_token_file().unwrap_err().to_string();
        assert!(err.contains("is empty") && err.contains("token"), "{err}");
        let mut s = AgentSettings {
            enrollment_token_file: Some(dir.join("absent")),
            ..AgentSettings::default()
        };
        let err = s.read_token_file().unwrap_err().to_string();
        assert!(
            err.contains(&dir.join("absent").display().to_string()),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_values_are_refused() {
        let flags = Flags {
            heartbeat_interval_seconds: Some(0),
            ..Flags::default()
        };
        let dir = std::env::temp_dir().join(format!("agent-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agent.toml");
        std::fs::write(&file, "").unwrap();
        assert!(AgentSettings::load(Some(&file), &flags).is_err());
        std::fs::write(&file, "heartbeat_intervall_seconds = 5\n").unwrap();
        let err = AgentSettings::load(Some(&file), &Flags::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("heartbeat_intervall_seconds"), "{err}");
        assert!(
            !format!(
                "{:?}",
                AgentSettings {
                    enrollment_token: Some("s3cret".into()),
                    ..AgentSettings::default()
                }
            )
            .contains("s3cret")
        );
        let flags = Flags {
            enrollment_token: Some("s3cret".into()),
            ..Flags::default()
        };
        assert!(!format!("{flags:?}").contains("s3cret"));
    }
}
