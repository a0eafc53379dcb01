//! `POST /api/v1/heartbeats`: one heartbeat or a batch, and the answer.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::MAX_BATCH_HEARTBEATS;
use crate::error::ValidationError;

/// The user session as the agent sees it. A `locked` or `none` session makes the machine's
/// status `idle`; waste time still follows the idle threshold, as for every session state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Session {
    Active,
    Locked,
    None,
    #[default]
    Unknown,
}

impl Session {
    pub fn as_str(self) -> &'static str {
        match self {
            Session::Active => "active",
            Session::Locked => "locked",
            Session::None => "none",
            Session::Unknown => "unknown",
        }
    }

    /// Parses the stored form written by [`Session::as_str`]; anything else is `unknown`.
    pub fn from_stored(s: &str) -> Self {
        match s {
            "active" => Session::Active,
            "locked" => Session::Locked,
            "none" => Session::None,
            _ => Session::Unknown,
        }
    }

    /// Whether the session itself says nobody is using the machine.
    pub fn is_away(self) -> bool {
        matches!(self, Session::Locked | Session::None)
    }
}

/// How the agent measured `idle_seconds`. The collector shows it beside the machine, so an
/// operator can tell a desktop session from a coarse or missing source. A name this version
/// does not know (a newer agent's) reads as `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum IdleSourceKind {
    /// The X server's screen-saver extension (exact, per input event).
    X11Screensaver,
    /// GNOME's Mutter idle monitor over D-Bus (exact; Wayland sessions).
    GnomeMutter,
    /// systemd-logind's idle hint (coarse; knows when nobody is logged in).
    Logind,
    /// The Windows console session (WTS).
    WindowsWts,
    /// macOS `HIDIdleTime` from the IOKit registry.
    MacosIokit,
    /// No source worked: `idle_seconds` is `null`.
    None,
    /// An agent of the original Python GreenOps (`/api/agents/heartbeat`): it reports 0 when
    /// its idle detection fails and guesses from CPU load on headless Linux, so its figures
    /// are read with care.
    SeedLegacy,
    #[serde(other)]
    Other,
}

impl IdleSourceKind {
    pub const ALL: [IdleSourceKind; 8] = [
        IdleSourceKind::X11Screensaver,
        IdleSourceKind::GnomeMutter,
        IdleSourceKind::Logind,
        IdleSourceKind::WindowsWts,
        IdleSourceKind::MacosIokit,
        IdleSourceKind::None,
        IdleSourceKind::SeedLegacy,
        IdleSourceKind::Other,
    ];

    /// The wire and stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            IdleSourceKind::X11Screensaver => "x11-screensaver",
            IdleSourceKind::GnomeMutter => "gnome-mutter",
            IdleSourceKind::Logind => "logind",
            IdleSourceKind::WindowsWts => "windows-wts",
            IdleSourceKind::MacosIokit => "macos-iokit",
            IdleSourceKind::None => "none",
            IdleSourceKind::SeedLegacy => "seed-legacy",
            IdleSourceKind::Other => "other",
        }
    }

    /// Parses a name written by [`IdleSourceKind::as_str`]; anything else is `other`.
    pub fn from_name(name: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or(IdleSourceKind::Other)
    }
}

/// One heartbeat as sent by an agent. Unknown fields are ignored (forward compatibility).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Heartbeat {
    /// Strictly increasing per agent credential, persisted by the agent; starts at 1.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)
    )]
    pub seq: u64,
    /// Agent wall clock when the sample was taken.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub sent_at: OffsetDateTime,
    /// Seconds since the last keyboard/mouse input at `sent_at`; `None` (JSON `null`) when the
    /// agent could not determine it. The field itself is required.
    #[cfg_attr(
        feature = "openapi",
        schema(required, minimum = 0, maximum = 316_224_000)
    )]
    pub idle_seconds: Option<f64>,
    #[serde(default)]
    pub session: Session,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
    pub cpu_usage_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
    pub memory_usage_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 0, maximum = 9_223_372_036_854_775_807_u64)
    )]
    pub uptime_seconds: Option<u64>,
    /// Which source measured `idle_seconds`; older agents leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_source: Option<IdleSourceKind>,
}

/// `{"heartbeats": [...]}`: several heartbeats in `seq` order (spool replay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatBatch {
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub heartbeats: Vec<Heartbeat>,
}

/// A heartbeat whose values are all within the protocol's ranges, in integer milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValidHeartbeat {
    pub seq: u64,
    pub sent_at_ms: i64,
    pub idle_ms: Option<i64>,
    pub session: Session,
    pub cpu_usage_ratio: Option<f64>,
    pub memory_usage_ratio: Option<f64>,
    pub uptime_seconds: Option<u64>,
    pub idle_source: Option<IdleSourceKind>,
}

/// Earliest `sent_at` accepted: 2000-01-01T00:00:00Z.
const MIN_SENT_AT_MS: i64 = 946_684_800_000;
/// Largest idle time accepted: ten years.
const MAX_IDLE_SECONDS: f64 = 10.0 * 366.0 * 86_400.0;

impl Heartbeat {
    /// Checks every field's range and converts times to integer milliseconds.
    pub fn validate(&self) -> Result<ValidHeartbeat, ValidationError> {
        if self.seq == 0 || self.seq > i64::MAX as u64 {
            return Err(ValidationError::new("seq", "must be between 1 and 2^63-1"));
        }
        let sent_at_ms = i64::try_from(self.sent_at.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| ValidationError::new("sent_at", "is out of range"))?;
        if sent_at_ms < MIN_SENT_AT_MS {
            return Err(ValidationError::new("sent_at", "must be after 2000-01-01"));
        }
        let idle_ms = match self.idle_seconds {
            None => None,
            Some(s) if s.is_finite() && (0.0..=MAX_IDLE_SECONDS).contains(&s) => {
                // Bounded above, so the conversion is exact enough and cannot overflow.
                Some((s * 1000.0).round() as i64)
            }
            Some(_) => {
                return Err(ValidationError::new(
                    "idle_seconds",
                    "must be null or a number between 0 and 10 years",
                ));
            }
        };
        check_ratio("cpu_usage_ratio", self.cpu_usage_ratio)?;
        check_ratio("memory_usage_ratio", self.memory_usage_ratio)?;
        if self.uptime_seconds.is_some_and(|u| u > i64::MAX as u64) {
            return Err(ValidationError::new("uptime_seconds", "is out of range"));
        }
        Ok(ValidHeartbeat {
            seq: self.seq,
            sent_at_ms,
            idle_ms,
            session: self.session,
            cpu_usage_ratio: self.cpu_usage_ratio,
            memory_usage_ratio: self.memory_usage_ratio,
            uptime_seconds: self.uptime_seconds,
            idle_source: self.idle_source,
        })
    }
}

fn check_ratio(field: &str, value: Option<f64>) -> Result<(), ValidationError> {
    match value {
        Some(v) if !(v.is_finite() && (0.0..=1.0).contains(&v)) => Err(ValidationError::new(
            field,
            "must be a number between 0 and 1",
        )),
        _ => Ok(()),
    }
}

/// Why a heartbeat request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not JSON at all (400).
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// JSON, but a field has the wrong type or an out-of-range value (422).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// More heartbeats than one batch may hold (413).
    #[error("a batch holds at most {MAX_BATCH_HEARTBEATS} heartbeats, got {0}")]
    TooMany(usize),
}

/// One heartbeat of a request body: its position, its `seq` when it could be read, and either
/// its validated values or what is wrong with them (the field named relative to the body,
/// e.g. `heartbeats[3].idle_seconds`).
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedHeartbeat {
    pub index: usize,
    /// Whether it came in a batch (fields are then named `heartbeats[i].…`).
    pub in_batch: bool,
    pub seq: Option<u64>,
    pub heartbeat: Result<ValidHeartbeat, ValidationError>,
}

/// Parses a heartbeat request body: one heartbeat or `{"heartbeats": [...]}` (1 to
/// [`MAX_BATCH_HEARTBEATS`]). The body as a whole is refused only when it is not JSON, not an
/// object, or not a list of the right size; every heartbeat in it is then validated on its own,
/// so one bad heartbeat never refuses its neighbours (DESIGN §3).
pub fn parse_heartbeat_body(body: &[u8]) -> Result<Vec<ParsedHeartbeat>, BodyError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(ValidationError::new("$", "the body must be a JSON object").into());
    };
    let Some(items) = map.get("heartbeats") else {
        return Ok(vec![parse_one(0, serde_json::Value::Object(map), None)]);
    };
    let Some(list) = items.as_array() else {
        return Err(ValidationError::new("heartbeats", "must be an array").into());
    };
    if list.len() > MAX_BATCH_HEARTBEATS {
        return Err(BodyError::TooMany(list.len()));
    }
    if list.is_empty() {
        return Err(ValidationError::new("heartbeats", "must not be empty").into());
    }
    Ok(list
        .iter()
        .enumerate()
        .map(|(i, item)| parse_one(i, item.clone(), Some(&format!("heartbeats[{i}]"))))
        .collect())
}

fn parse_one(index: usize, item: serde_json::Value, prefix: Option<&str>) -> ParsedHeartbeat {
    let within = |e: ValidationError| match prefix {
        Some(p) => e.within(p),
        None => e,
    };
    let seq = item
        .get("seq")
        .and_then(serde_json::Value::as_u64)
        .filter(|s| (1..=i64::MAX as u64).contains(s));
    let heartbeat = require_idle_field(&item)
        .and_then(|()| typed::<Heartbeat>(item))
        .and_then(|hb| hb.validate())
        .map_err(within);
    ParsedHeartbeat {
        index,
        in_batch: prefix.is_some(),
        seq,
        heartbeat,
    }
}

fn require_idle_field(item: &serde_json::Value) -> Result<(), ValidationError> {
    match item {
        serde_json::Value::Object(m) if !m.contains_key("idle_seconds") => Err(
            ValidationError::new("idle_seconds", "is required (send null when unknown)"),
        ),
        _ => Ok(()),
    }
}

fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ValidationError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "$".to_string() } else { path };
        ValidationError::new(field, e.into_inner().to_string())
    })
}

/// What happened to one heartbeat of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum HeartbeatStatus {
    /// Committed: it counts.
    Accepted,
    /// Already received (its `seq` is not above the last accepted one): nothing changed.
    Duplicate,
    /// Refused for good — it can never be accepted; `error` says why.
    Rejected,
}

/// Why a heartbeat was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatError {
    /// `invalid_field` or `clock_ahead`.
    pub code: String,
    /// The field, relative to the body (e.g. `heartbeats[3].sent_at`).
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatResult {
    /// Position in the request (0 for a single heartbeat).
    #[serde(default)]
    pub index: usize,
    /// The heartbeat's `seq`, when it could be read.
    pub seq: Option<u64>,
    pub status: HeartbeatStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<HeartbeatError>,
}

/// Answer to a heartbeat request (200): every accepted and duplicate heartbeat listed is
/// committed; rejected ones never will be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatResponse {
    pub accepted: usize,
    pub duplicates: usize,
    #[serde(default)]
    pub rejected: usize,
    pub results: Vec<HeartbeatResult>,
}

impl HeartbeatResponse {
    pub fn from_results(results: Vec<HeartbeatResult>) -> Self {
        let count = |s: HeartbeatStatus| results.iter().filter(|r| r.status == s).count();
        Self {
            accepted: count(HeartbeatStatus::Accepted),
            duplicates: count(HeartbeatStatus::Duplicate),
            rejected: count(HeartbeatStatus::Rejected),
            results,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field named by the first refusal: of the body, or of a heartbeat in it.
    fn field_of(body: &str) -> String {
        match parse_heartbeat_body(body.as_bytes()) {
            Err(BodyError::Invalid(e)) => e.field,
            Ok(parsed) => match parsed.into_iter().find_map(|p| p.heartbeat.err()) {
                Some(e) => e.field,
                None => panic!("expected a validation error for {body}"),
            },
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn valid(body: &str) -> Vec<ValidHeartbeat> {
        parse_heartbeat_body(body.as_bytes())
            .unwrap()
            .into_iter()
            .map(|p| p.heartbeat.unwrap())
            .collect()
    }

    #[test]
    fn parses_a_single_heartbeat_with_only_required_fields() {
        let hbs = valid(
            r#"{"seq": 1, "sent_at": "2026-11-27T09:15:00Z", "idle_seconds": null, "extra": 1}"#,
        );
        assert_eq!(hbs.len(), 1);
        assert_eq!(hbs[0].idle_ms, None);
        assert_eq!(hbs[0].session, Session::Unknown);
        assert_eq!(hbs[0].sent_at_ms, 1_795_770_900_000);
    }

    #[test]
    fn parses_a_full_heartbeat() {
        let hbs = valid(
            r#"{"seq": 42, "sent_at": "2026-11-27T09:15:00.250+01:00", "idle_seconds": 412.5,
                "session": "locked", "cpu_usage_ratio": 0.07, "memory_usage_ratio": 0.41,
                "uptime_seconds": 86400}"#,
        );
        let hb = hbs[0];
        assert_eq!(hb.seq, 42);
        assert_eq!(hb.sent_at_ms, 1_795_770_900_000 - 3_600_000 + 250);
        assert_eq!(hb.idle_ms, Some(412_500));
        assert_eq!(hb.session, Session::Locked);
        assert_eq!(hb.uptime_seconds, Some(86_400));
        assert_eq!(hb.idle_source, None);
    }

    #[test]
    fn idle_sources_parse_by_name_and_unknown_names_read_as_other() {
        for kind in IdleSourceKind::ALL {
            assert_eq!(IdleSourceKind::from_name(kind.as_str()), kind);
            let json = format!(
                r#"{{"seq": 1, "sent_at": "2026-11-27T09:15:00Z", "idle_seconds": 1, "idle_source": "{}"}}"#,
                kind.as_str()
            );
            assert_eq!(valid(&json)[0].idle_source, Some(kind));
        }
        let newer = r#"{"seq": 1, "sent_at": "2026-11-27T09:15:00Z", "idle_seconds": 1,
                        "idle_source": "a-source-from-2030"}"#;
        assert_eq!(valid(newer)[0].idle_source, Some(IdleSourceKind::Other));
        assert_eq!(
            field_of(
                r#"{"seq": 1, "sent_at": "2026-11-27T09:15:00Z", "idle_seconds": 1, "idle_source": 7}"#
            ),
            "idle_source"
        );
    }

    #[test]
    fn malformed_json_is_not_a_validation_error() {
        assert!(matches!(
            parse_heartbeat_body(b"{\"seq\": 1,"),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            parse_heartbeat_body(b""),
            Err(BodyError::Malformed(_))
        ));
    }

    #[test]
    fn names_the_bad_field() {
        let ok = r#""sent_at": "2026-11-27T09:15:00Z", "idle_seconds": 1"#;
        assert_eq!(field_of(&format!(r#"{{"seq": 0, {ok}}}"#)), "seq");
        assert_eq!(field_of(&format!(r#"{{"seq": -1, {ok}}}"#)), "seq");
        assert_eq!(field_of(&format!(r#"{{"seq": "7", {ok}}}"#)), "seq");
        assert_eq!(
            field_of(r#"{"seq": 1, "sent_at": "yesterday", "idle_seconds": 1}"#),
            "sent_at"
        );
        assert_eq!(
            field_of(r#"{"seq": 1, "sent_at": "2026-11-27T09:15:00Z", "idle_seconds": -5}"#),
            "idle_seconds"
        );
        assert_eq!(
            field_of(r#"{"seq": 1, "sent_at": "2026-11-27T09:15:00Z"}"#),
            "idle_seconds"
        );
        assert_eq!(
            field_of(&format!(r#"{{"seq": 1, {ok}, "cpu_usage_ratio": 1.5}}"#)),
            "cpu_usage_ratio"
        );
        assert_eq!(
            field_of(&format!(
                r#"{{"seq": 1, {ok}, "memory_usage_ratio": -0.1}}"#
            )),
            "memory_usage_ratio"
        );
        assert_eq!(
            field_of(&format!(r#"{{"seq": 1, {ok}, "session": "asleep"}}"#)),
            "session"
        );
        assert_eq!(field_of("[1, 2]"), "$");
    }

    #[test]
    fn one_bad_heartbeat_never_refuses_its_neighbours() {
        let body = r#"{"heartbeats": [
            {"seq": 1, "sent_at": "2026-11-27T09:15:00Z", "idle_seconds": 1},
            {"seq": 2, "sent_at": "2026-11-27T09:16:00Z", "idle_seconds": -1},
            {"seq": 3, "sent_at": 5, "idle_seconds": 1},
            {"seq": "x", "sent_at": "2026-11-27T09:17:00Z", "idle_seconds": 1},
            {"seq": 5, "sent_at": "2026-11-27T09:18:00Z", "idle_seconds": 1}]}"#;
        let parsed = parse_heartbeat_body(body.as_bytes()).unwrap();
        let seqs: Vec<Option<u64>> = parsed.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, vec![Some(1), Some(2), Some(3), None, Some(5)]);
        let errors: Vec<Option<String>> = parsed
            .iter()
            .map(|p| p.heartbeat.as_ref().err().map(|e| e.field.clone()))
            .collect();
        assert_eq!(
            errors,
            vec![
                None,
                Some("heartbeats[1].idle_seconds".into()),
                Some("heartbeats[2].sent_at".into()),
                Some("heartbeats[3].seq".into()),
                None
            ]
        );
        assert_eq!(field_of(r#"{"heartbeats": []}"#), "heartbeats");
    }

    #[test]
    fn oversized_batches_are_refused_before_parsing_items() {
        let one = r#"{"seq": 1, "sent_at": "2026-11-27T09:15:00Z", "idle_seconds": 1}"#;
        let body = format!(r#"{{"heartbeats": [{}]}}"#, vec![one; 1001].join(","));
        assert_eq!(
            parse_heartbeat_body(body.as_bytes()),
            Err(BodyError::TooMany(1001))
        );
    }

    #[test]
    fn a_heartbeat_round_trips_through_json() {
        let hb = Heartbeat {
            seq: 9,
            sent_at: time::macros::datetime!(2026-11-27 09:15:00 UTC),
            idle_seconds: None,
            session: Session::Active,
            cpu_usage_ratio: Some(0.5),
            memory_usage_ratio: None,
            uptime_seconds: Some(10),
            idle_source: Some(IdleSourceKind::GnomeMutter),
        };
        let json = serde_json::to_vec(&hb).unwrap();
        assert!(String::from_utf8_lossy(&json).contains("\"idle_source\":\"gnome-mutter\""));
        assert!(String::from_utf8_lossy(&json).contains("\"idle_seconds\":null"));
        let parsed = valid(std::str::from_utf8(&json).unwrap());
        assert_eq!(parsed[0].seq, 9);
        assert_eq!(parsed[0].idle_ms, None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_heartbeat_body(&bytes);
        }

        #[test]
        fn arbitrary_json_never_panics_and_valid_answers_are_in_range(doc in crate::testing::json()) {
            let body = serde_json::to_vec(&doc).unwrap_or_default();
            if let Ok(parsed) = parse_heartbeat_body(&body) {
                for p in parsed {
                    if let Ok(hb) = p.heartbeat {
                        proptest::prop_assert!(hb.seq >= 1);
                        proptest::prop_assert_eq!(p.seq, Some(hb.seq));
                        proptest::prop_assert!(hb.idle_ms.is_none_or(|ms| ms >= 0));
                    }
                }
            }
            let batch = serde_json::json!({"heartbeats": [doc]});
            let _ = parse_heartbeat_body(&serde_json::to_vec(&batch).unwrap_or_default());
        }

        #[test]
        fn valid_idle_values_convert_to_rounded_milliseconds(ms in 0i64..315_000_000_000) {
            let body = format!(
                r#"{{"seq": 1, "sent_at": "2026-11-27T09:15:00Z", "idle_seconds": {}}}"#,
                ms as f64 / 1000.0
            );
            let hb = valid(&body)[0];
            proptest::prop_assert_eq!(hb.idle_ms, Some(ms));
        }
    }
}
