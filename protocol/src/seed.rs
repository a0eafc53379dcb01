//! The wire format of the original Python GreenOps agents (`/api/agents/*`), which the
//! collector answers when `compat.seed_agents` is on, so those agents report into GreenOps
//! during a migration. Their shapes are fixed by agents already installed: answers are HTTP 200
//! (older agents check `== 200`), errors are `{"error": "<sentence>"}`, and a heartbeat answer's
//! `command` is always `null` (a `sleep` or `shutdown` there suspends or powers off the PC).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{ValidationError, check_text};

/// The `agent_version` of every machine that enrolled through this format.
pub const SEED_AGENT_VERSION: &str = "seed-legacy";

/// `POST /api/agents/register`, no auth header. Every field is optional here so that a missing
/// one is answered with its name (400) rather than a parser message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedRegisterRequest {
    /// A MAC address (`aa:bb:cc:dd:ee:ff`) or, on machines without one, an id string.
    #[serde(default)]
    pub mac_address: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    /// Python's `platform.system()`: `Linux`, `Windows`, `Darwin`.
    #[serde(default)]
    pub os_type: Option<String>,
    #[serde(default)]
    pub os_version: Option<String>,
}

/// A registration whose fields passed validation, in GreenOps terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSeedRegistration {
    /// Derived from the MAC or id string ([`seed_machine_key`]).
    pub machine_key: String,
    /// The normalised MAC, when `mac_address` was one.
    pub mac: Option<String>,
    pub hostname: String,
    /// GreenOps' spelling of `os_type` ([`seed_os`]).
    pub os: String,
    pub os_version: String,
}

/// Why a request of the original format was refused: a required field is absent (400) or a
/// value is out of range (422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl SeedRegisterRequest {
    pub fn validate(&self) -> Result<ValidSeedRegistration, SeedError> {
        let mac_address = required("mac_address", self.mac_address.as_deref())?;
        let hostname = required("hostname", self.hostname.as_deref())?;
        let os_type = required("os_type", self.os_type.as_deref())?;
        let (machine_key, mac) = seed_machine_key(mac_address)?;
        check_text("hostname", hostname, 1, crate::enroll::MAX_HOSTNAME_CHARS)?;
        check_text("os_type", os_type, 1, 64)?;
        let os_version = self.os_version.clone().unwrap_or_default();
        check_text("os_version", &os_version, 0, 128)?;
        Ok(ValidSeedRegistration {
            machine_key,
            mac,
            hostname: hostname.to_string(),
            os: seed_os(os_type),
            os_version,
        })
    }
}

fn required<'a>(field: &'static str, value: Option<&'a str>) -> Result<&'a str, SeedError> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(SeedError::Missing(field)),
    }
}

/// Answer to a registration (HTTP 200, never 201).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedRegisterResponse {
    pub machine_id: String,
    /// The agent's bearer credential (shown once; stored as its SHA-256).
    pub token: String,
    pub message: String,
}

impl std::fmt::Debug for SeedRegisterResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedRegisterResponse")
            .field("machine_id", &self.machine_id)
            .field("token", &"<redacted>")
            .field("message", &self.message)
            .finish()
    }
}

/// Longest id string (in bytes) a `mac_address` that is not a MAC may be: its hex form fills
/// the 128 characters of a machine key.
pub const MAX_SEED_ID_BYTES: usize = 60;

/// The GreenOps `machine_key` of an original agent's `mac_address`, and the MAC itself when it
/// is one. A MAC (`aa:bb:cc:dd:ee:ff`, `AA-BB-…`, or 12 hex digits) gives
/// `seed-mac-aabbccddeeff`, whatever its case or separators; any other id string gives
/// `seed-id-` and the lower-case hex of its UTF-8 bytes, padded with `-` to 16 characters.
/// Distinct ids give distinct keys, and the import derives the same key from the original
/// database, so an agent that registers after an import lands on its imported machine.
pub fn seed_machine_key(mac_address: &str) -> Result<(String, Option<String>), ValidationError> {
    let text = mac_address.trim();
    let bare = text.len() == 12 && text.bytes().all(|b| b.is_ascii_hexdigit());
    let mac = if bare {
        let lower = text.to_ascii_lowercase();
        let pairs: Vec<&str> = (0..6).map(|i| &lower[i * 2..i * 2 + 2]).collect();
        Some(pairs.join(":"))
    } else {
        crate::enroll::normalize_mac(text)
    };
    if let Some(mac) = mac {
        return Ok((format!("seed-mac-{}", mac.replace(':', "")), Some(mac)));
    }
    check_text("mac_address", text, 1, MAX_SEED_ID_BYTES)?;
    if text.len() > MAX_SEED_ID_BYTES {
        return Err(ValidationError::new(
            "mac_address",
            format!("must be a MAC address or an id of at most {MAX_SEED_ID_BYTES} bytes"),
        ));
    }
    let mut key = String::from("seed-id-");
    for b in text.bytes() {
        key.push_str(&format!("{b:02x}"));
    }
    while key.len() < 16 {
        key.push('-');
    }
    Ok((key, None))
}

/// GreenOps' name of an original `os_type` (`platform.system()`): `linux`, `windows`, `macos`;
/// anything else in lower case.
pub fn seed_os(os_type: &str) -> String {
    match os_type.trim().to_ascii_lowercase().as_str() {
        "darwin" | "macos" | "mac" | "osx" => "macos".into(),
        other => other.to_string(),
    }
}

/// `POST /api/agents/heartbeat` (`Authorization: Bearer <token>`): the union of both body
/// generations, unknown fields ignored.
///
/// - older agents: `{"idle_seconds", "cpu_usage", "memory_usage", "uptime_seconds",
///   "timestamp"}` (ISO 8601 with offset);
/// - newer agents: `{"machine_id", "hostname", "os_type", "idle_seconds", "cpu_usage",
///   "memory_usage", "uptime_seconds"}` (no timestamp; `machine_id`, `hostname` and `os_type`
///   are informative only — the token names the machine).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeedHeartbeat {
    /// Seconds since the last input; `null` reads as unknown. Required.
    #[serde(default, deserialize_with = "present")]
    pub idle_seconds: Option<Option<f64>>,
    /// Percent (0–100); the older agent sends a constant 0.0 placeholder, read as absent.
    #[serde(default)]
    pub cpu_usage: Option<f64>,
    /// Percent (0–100); 0.0 reads as absent, as for `cpu_usage`.
    #[serde(default)]
    pub memory_usage: Option<f64>,
    #[serde(default)]
    pub uptime_seconds: Option<f64>,
    /// ISO 8601 with an offset, e.g. `2026-11-27T09:15:00.123456+00:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
}

/// `Some(None)` for an explicit `null`, `None` (by `default`) when the field is absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<f64>>, D::Error> {
    Option::<f64>::deserialize(d).map(Some)
}

/// A heartbeat of the original format in GreenOps units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValidSeedHeartbeat {
    /// From `timestamp`, when the agent sent one.
    pub sent_at_ms: Option<i64>,
    pub idle_ms: Option<i64>,
    pub cpu_usage_ratio: Option<f64>,
    pub memory_usage_ratio: Option<f64>,
    pub uptime_seconds: Option<u64>,
}

/// Largest idle time accepted (as for native heartbeats): ten years.
const MAX_IDLE_SECONDS: f64 = 10.0 * 366.0 * 86_400.0;

impl SeedHeartbeat {
    pub fn validate(&self) -> Result<ValidSeedHeartbeat, SeedError> {
        let idle = self
            .idle_seconds
            .ok_or(SeedError::Missing("idle_seconds"))?;
        let idle_ms = seed_idle_ms(idle)?;
        let uptime_seconds = match self.uptime_seconds {
            None => None,
            Some(u) if u.is_finite() && (0.0..9.0e15).contains(&u) => Some(u as u64),
            Some(_) => {
                return Err(ValidationError::new(
                    "uptime_seconds",
                    "must be a number of seconds, at least 0",
                )
                .into());
            }
        };
        let sent_at_ms = self
            .timestamp
            .as_deref()
            .map(seed_timestamp_ms)
            .transpose()?;
        Ok(ValidSeedHeartbeat {
            sent_at_ms,
            idle_ms,
            cpu_usage_ratio: seed_percent("cpu_usage", self.cpu_usage)?,
            memory_usage_ratio: seed_percent("memory_usage", self.memory_usage)?,
            uptime_seconds,
        })
    }
}

/// `idle_seconds` of the original format (`None`: unknown) in milliseconds.
pub fn seed_idle_ms(idle_seconds: Option<f64>) -> Result<Option<i64>, ValidationError> {
    match idle_seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && (0.0..=MAX_IDLE_SECONDS).contains(&s) => {
            Ok(Some((s * 1000.0).round() as i64))
        }
        Some(_) => Err(ValidationError::new(
            "idle_seconds",
            "must be a number between 0 and 10 years",
        )),
    }
}

/// A percentage (0–100) of the original format as a ratio; 0.0 — the older agent's constant
/// placeholder — and absence both read as "not reported".
pub fn seed_percent(field: &str, value: Option<f64>) -> Result<Option<f64>, ValidationError> {
    match value {
        None => Ok(None),
        Some(0.0) => Ok(None),
        Some(v) if v.is_finite() && (0.0..=100.0).contains(&v) => Ok(Some(v / 100.0)),
        Some(_) => Err(ValidationError::new(
            field,
            "must be a percentage between 0 and 100",
        )),
    }
}

/// An ISO 8601 / RFC 3339 timestamp with an offset (`Z` or `±hh:mm`) in milliseconds.
pub fn seed_timestamp_ms(text: &str) -> Result<i64, ValidationError> {
    let parsed = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            ValidationError::new(
                "timestamp",
                "must be ISO 8601 with an offset, e.g. 2026-11-27T09:15:00+00:00",
            )
        })?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000)
        .ok()
        .filter(|ms| *ms >= MIN_TIMESTAMP_MS)
        .ok_or_else(|| ValidationError::new("timestamp", "must be after 2000-01-01"))
}

/// Earliest `timestamp` accepted, as for native heartbeats: 2000-01-01T00:00:00Z.
const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;

/// The `command` of a heartbeat answer: always JSON `null`. It has no other value, so the
/// collector cannot tell an original agent to sleep or shut down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoCommand;

impl Serialize for NoCommand {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }
}

impl<'de> Deserialize<'de> for NoCommand {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Option::<serde_json::Value>::deserialize(d)? {
            None => Ok(NoCommand),
            Some(v) => Err(serde::de::Error::custom(format!(
                "command must be null, got {v}"
            ))),
        }
    }
}

/// The machine's status in the original's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeedMachineStatus {
    Online,
    Idle,
    Offline,
}

/// Answer to a committed heartbeat (HTTP 200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedHeartbeatResponse {
    /// Always `ok`.
    pub status: String,
    pub machine_status: SeedMachineStatus,
    pub command: NoCommand,
}

impl SeedHeartbeatResponse {
    pub fn ok(machine_status: SeedMachineStatus) -> Self {
        Self {
            status: "ok".into(),
            machine_status,
            command: NoCommand,
        }
    }
}

/// `GET /api/agents/commands`: always `{"commands": []}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedCommandsResponse {
    commands: [NoCommand; 0],
}

/// An error answer of the original format: `{"error": "<sentence>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_give_one_key_whatever_their_spelling() {
        let key = |s: &str| seed_machine_key(s).unwrap().0;
        assert_eq!(key("aa:bb:cc:dd:ee:ff"), "seed-mac-aabbccddeeff");
        assert_eq!(key("AA-BB-CC-DD-EE-FF"), "seed-mac-aabbccddeeff");
        assert_eq!(key(" aabbccddeeff "), "seed-mac-aabbccddeeff");
        assert_eq!(
            seed_machine_key("AA:BB:CC:DD:EE:FF").unwrap().1.as_deref(),
            Some("aa:bb:cc:dd:ee:ff")
        );
    }

    #[test]
    fn id_strings_give_distinct_keys_in_the_key_alphabet() {
        let key = |s: &str| seed_machine_key(s).unwrap().0;
        assert_eq!(key("pc1"), "seed-id-706331--");
        assert_ne!(key("a.b"), key("a:b"));
        assert_ne!(key("Ab"), key("ab"));
        for id in ["pc1", "héllo wörld", "x", &"z".repeat(MAX_SEED_ID_BYTES)] {
            let k = key(id);
            assert!((16..=128).contains(&k.len()), "{k}");
            assert!(
                k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            );
        }
        assert!(seed_machine_key(&"z".repeat(MAX_SEED_ID_BYTES + 1)).is_err());
        assert!(seed_machine_key("a\nb").is_err());
    }

    #[test]
    fn registration_names_the_missing_field() {
        let r = SeedRegisterRequest {
            mac_address: Some("aa:bb:cc:dd:ee:ff".into()),
            hostname: Some("pc".into()),
            os_type: None,
            os_version: None,
        };
        assert_eq!(r.validate(), Err(SeedError::Missing("os_type")));
        let ok = SeedRegisterRequest {
            os_type: Some("Darwin".into()),
            ..r
        }
        .validate()
        .unwrap();
        assert_eq!(ok.os, "macos");
        assert_eq!(ok.os_version, "");
    }

    #[test]
    fn both_heartbeat_generations_validate() {
        let older: SeedHeartbeat = serde_json::from_str(
            r#"{"idle_seconds": 412, "cpu_usage": 0.0, "memory_usage": 0.0,
                "uptime_seconds": 86400, "timestamp": "2026-11-27T09:15:00.123456+00:00"}"#,
        )
        .unwrap();
        let v = older.validate().unwrap();
        assert_eq!(v.idle_ms, Some(412_000));
        assert_eq!(
            v.cpu_usage_ratio, None,
            "0.0 is the older agent's placeholder"
        );
        assert_eq!(v.sent_at_ms, Some(1_795_770_900_123));
        let newer: SeedHeartbeat = serde_json::from_str(
            r#"{"machine_id": 7, "hostname": "pc", "os_type": "Linux", "idle_seconds": 3.5,
                "cpu_usage": 12.5, "memory_usage": 40, "uptime_seconds": 60}"#,
        )
        .unwrap();
        let v = newer.validate().unwrap();
        assert_eq!(v.sent_at_ms, None);
        assert_eq!(v.cpu_usage_ratio, Some(0.125));
        assert_eq!(v.memory_usage_ratio, Some(0.4));
    }

    #[test]
    fn bad_heartbeats_are_refused_with_the_field() {
        let parse = |s: &str| serde_json::from_str::<SeedHeartbeat>(s).unwrap().validate();
        assert_eq!(
            parse(r#"{"cpu_usage": 1}"#),
            Err(SeedError::Missing("idle_seconds"))
        );
        assert!(
            parse(r#"{"idle_seconds": null}"#)
                .unwrap()
                .idle_ms
                .is_none()
        );
        for (body, field) in [
            (r#"{"idle_seconds": -1}"#, "idle_seconds"),
            (r#"{"idle_seconds": 1, "cpu_usage": 101}"#, "cpu_usage"),
            (r#"{"idle_seconds": 1, "memory_usage": -3}"#, "memory_usage"),
            (
                r#"{"idle_seconds": 1, "uptime_seconds": -3}"#,
                "uptime_seconds",
            ),
            (
                r#"{"idle_seconds": 1, "timestamp": "2026-11-27T09:15:00"}"#,
                "timestamp",
            ),
            (
                r#"{"idle_seconds": 1, "timestamp": "1999-12-31T23:59:59Z"}"#,
                "timestamp",
            ),
        ] {
            match parse(body) {
                Err(SeedError::Invalid(e)) => assert_eq!(e.field, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn answers_have_the_original_shapes() {
        assert_eq!(
            serde_json::to_value(SeedHeartbeatResponse::ok(SeedMachineStatus::Idle)).unwrap(),
            serde_json::json!({"status": "ok", "machine_status": "idle", "command": null})
        );
        assert_eq!(
            serde_json::to_value(SeedCommandsResponse::default()).unwrap(),
            serde_json::json!({"commands": []})
        );
        assert!(
            serde_json::from_str::<SeedHeartbeatResponse>(
                r#"{"status": "ok", "machine_status": "online", "command": "sleep"}"#
            )
            .is_err()
        );
    }
}
