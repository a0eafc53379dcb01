//! `POST /api/v1/agents/enroll`: an agent trades an enrollment token for its own credential.

use serde::{Deserialize, Serialize};

use crate::error::{ValidationError, check_text};

/// Body of an enrolment request.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollRequest {
    /// Absent only when the operator has turned on open enrolment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable, max_length = 256))]
    pub enrollment_token: Option<String>,
    /// The agent's stable identity, generated once and kept beside its token: 16 to 128 ASCII
    /// letters, digits, `-` and `_`.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 16, max_length = 128, pattern = "^[A-Za-z0-9_-]{16,128}$")
    )]
    pub machine_key: String,
    /// 1 to 253 characters, no control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 253,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub hostname: String,
    /// 1 to 64 characters, e.g. `linux`, `windows`, `macos`.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 64,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub os: String,
    /// 0 to 128 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 0,
            max_length = 128,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub os_version: String,
    /// 1 to 64 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 64,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub agent_version: String,
    /// Up to 32 MAC-48 addresses, `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff` (stored in the
    /// first form, lower case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = mac_list_schema))]
    pub mac_addresses: Option<Vec<String>>,
}

impl std::fmt::Debug for EnrollRequest {
    // The enrollment token is a secret: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field(
                "enrollment_token",
                &self.enrollment_token.as_ref().map(|_| "<redacted>"),
            )
            .field("machine_key", &self.machine_key)
            .field("hostname", &self.hostname)
            .field("os", &self.os)
            .field("os_version", &self.os_version)
            .field("agent_version", &self.agent_version)
            .field("mac_addresses", &self.mac_addresses)
            .finish()
    }
}

/// The schema of `mac_addresses`: up to 32 MAC-48 addresses, or `null`.
#[cfg(feature = "openapi")]
fn mac_list_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .max_items(Some(MAX_MAC_ADDRESSES))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")),
        )
        .build()
        .into()
}

/// `aa:bb:cc:dd:ee:ff` in lower case, from that form or `AA-BB-CC-DD-EE-FF`.
pub fn normalize_mac(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    if bytes.len() != 17 {
        return None;
    }
    let separator = bytes[2];
    if separator != b':' && separator != b'-' {
        return None;
    }
    let mut out = String::with_capacity(17);
    for (i, &b) in bytes.iter().enumerate() {
        if i % 3 == 2 {
            if b != separator {
                return None;
            }
            out.push(':');
        } else if b.is_ascii_hexdigit() {
            out.push(char::from(b.to_ascii_lowercase()));
        } else {
            return None;
        }
    }
    Some(out)
}

/// An enrolment request whose descriptive fields passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEnrollment {
    pub machine_key: String,
    pub hostname: String,
    pub os: String,
    pub os_version: String,
    pub agent_version: String,
    pub mac_addresses: Vec<String>,
}

/// Longest hostname accepted (DNS names are at most 253 characters).
pub const MAX_HOSTNAME_CHARS: usize = 253;
const MAX_MAC_ADDRESSES: usize = 32;

impl EnrollRequest {
    /// Checks lengths and character sets; the token itself is checked by the collector.
    pub fn validate(&self) -> Result<ValidEnrollment, ValidationError> {
        check_text("machine_key", &self.machine_key, 16, 128)?;
        if !self
            .machine_key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ValidationError::new(
                "machine_key",
                "may contain only ASCII letters, digits, '-' and '_'",
            ));
        }
        check_text("hostname", &self.hostname, 1, MAX_HOSTNAME_CHARS)?;
        check_text("os", &self.os, 1, 64)?;
        check_text("os_version", &self.os_version, 0, 128)?;
        check_text("agent_version", &self.agent_version, 1, 64)?;
        let macs = self.mac_addresses.clone().unwrap_or_default();
        if macs.len() > MAX_MAC_ADDRESSES {
            return Err(ValidationError::new(
                "mac_addresses",
                format!("at most {MAX_MAC_ADDRESSES} addresses"),
            ));
        }
        let macs = macs
            .iter()
            .enumerate()
            .map(|(i, mac)| {
                normalize_mac(mac).ok_or_else(|| {
                    ValidationError::new(
                        format!("mac_addresses[{i}]"),
                        "must be a MAC address such as aa:bb:cc:dd:ee:ff",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ValidEnrollment {
            machine_key: self.machine_key.clone(),
            hostname: self.hostname.clone(),
            os: self.os.clone(),
            os_version: self.os_version.clone(),
            agent_version: self.agent_version.clone(),
            mac_addresses: macs,
        })
    }
}

/// Answer to a successful enrolment (201).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollResponse {
    pub machine_id: String,
    /// The agent's bearer credential; shown once, stored by the collector only as a hash.
    pub agent_token: String,
    pub heartbeat_interval_seconds: u64,
    pub idle_threshold_seconds: u64,
}

impl std::fmt::Debug for EnrollResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollResponse")
            .field("machine_id", &self.machine_id)
            .field("agent_token", &"<redacted>")
            .field(
                "heartbeat_interval_seconds",
                &self.heartbeat_interval_seconds,
            )
            .field("idle_threshold_seconds", &self.idle_threshold_seconds)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> EnrollRequest {
        EnrollRequest {
            enrollment_token: Some("t".into()),
            machine_key: "0123456789abcdef0123".into(),
            hostname: "pc-042.example.org".into(),
            os: "linux".into(),
            os_version: "Debian 12".into(),
            agent_version: "0.1.0".into(),
            mac_addresses: None,
        }
    }

    #[test]
    fn accepts_a_normal_request() {
        assert!(request().validate().is_ok());
    }

    #[test]
    fn rejects_short_or_odd_machine_keys() {
        let mut r = request();
        r.machine_key = "short".into();
        assert_eq!(r.validate().unwrap_err().field, "machine_key");
        r.machine_key = "0123456789abcdef012/".into();
        assert_eq!(r.validate().unwrap_err().field, "machine_key");
    }

    #[test]
    fn rejects_control_characters_and_long_hostnames() {
        let mut r = request();
        r.hostname = "pc\n1".into();
        assert_eq!(r.validate().unwrap_err().field, "hostname");
        r.hostname = "a".repeat(300);
        assert_eq!(r.validate().unwrap_err().field, "hostname");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let mut r = request();
        r.enrollment_token = Some("super-secret".into());
        assert!(!format!("{r:?}").contains("super-secret"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_json_never_panics_enrolment(doc in crate::testing::json()) {
            let valid = serde_json::from_value::<EnrollRequest>(doc)
                .ok()
                .and_then(|request| request.validate().ok());
            if let Some(valid) = valid {
                proptest::prop_assert!((16..=128).contains(&valid.machine_key.len()));
                proptest::prop_assert!(valid.mac_addresses.iter().all(|m| normalize_mac(m).as_deref() == Some(m.as_str())));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_enrolment(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(request) = serde_json::from_slice::<EnrollRequest>(&bytes) {
                let _ = request.validate();
            }
        }
    }
}
