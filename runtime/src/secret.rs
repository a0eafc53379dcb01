//! Secrets held in settings and state are [`secrecy::SecretString`]s: redacted in `Debug`,
//! zeroed when dropped, read only through `expose_secret()`. `secrecy` deserializes them but
//! refuses to serialize them; these helpers are for the few places that must write one out
//! (the agent's identity file, the settings defaults handed to figment, tests).

use secrecy::{ExposeSecret, SecretString};

/// `#[serde(serialize_with = "serialize_exposed")]` for an `Option<SecretString>`: writes the
/// secret itself, or nothing.
pub fn serialize_exposed<S: serde::Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => serializer.serialize_some(secret.expose_secret()),
        None => serializer.serialize_none(),
    }
}

/// Whether two optional secrets are equal (for `PartialEq` of the structs holding them).
pub fn same(a: &Option<SecretString>, b: &Option<SecretString>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.expose_secret() == b.expose_secret(),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Holder {
        #[serde(serialize_with = "serialize_exposed", default)]
        token: Option<SecretString>,
    }

    #[test]
    fn round_trips_and_stays_out_of_debug() {
        let held: Holder = serde_json::from_str(r#"{"token":"s3cret"}"#).unwrap();
        assert!(!format!("{held:?}").contains("s3cret"));
        assert_eq!(
            serde_json::to_string(&held).unwrap(),
            r#"{"token":"s3cret"}"#
        );
        let none: Holder = serde_json::from_str("{}").unwrap();
        assert_eq!(serde_json::to_string(&none).unwrap(), r#"{"token":null}"#);
        assert!(same(&held.token, &Some("s3cret".into())));
        assert!(!same(&held.token, &Some("other".into())));
        assert!(!same(&held.token, &None));
        assert!(same(&None, &None));
    }
}
