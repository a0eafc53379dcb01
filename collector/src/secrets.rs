//! Agent and enrollment tokens: generated with ≥ 256 bits of OS randomness, shown once,
//! stored only as SHA-256 hashes (DESIGN §6).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

/// Prefix of agent credentials (helps secret scanners and humans tell tokens apart).
pub const AGENT_TOKEN_PREFIX: &str = "gok_agent_";
/// Prefix of enrollment tokens.
pub const ENROLLMENT_TOKEN_PREFIX: &str = "gok_enroll_";

/// SHA-256 of a token: what the store keeps and looks up.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for TokenHash {
    // Even a hash is only shown shortened: enough to correlate, never to look up.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenHash({}…)", hex::encode(&self.0[..4]))
    }
}

/// A new random token: `prefix` + 256 random bits in URL-safe base64.
pub fn generate_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random number generator failed");
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A new machine id: 128 random bits as 32 lowercase hex digits.
pub fn new_machine_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_prefixed() {
        let a = generate_token(AGENT_TOKEN_PREFIX);
        let b = generate_token(AGENT_TOKEN_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with(AGENT_TOKEN_PREFIX));
        assert_eq!(a.len(), AGENT_TOKEN_PREFIX.len() + 43);
    }

    #[test]
    fn hashes_are_stable_and_debug_is_short() {
        assert_eq!(TokenHash::of("x"), TokenHash::of("x"));
        assert_ne!(TokenHash::of("x"), TokenHash::of("y"));
        assert!(format!("{:?}", TokenHash::of("x")).len() < 24);
    }
}
