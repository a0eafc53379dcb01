//! The agent's persistent identity: its `machine_key` (generated once), its credential, and
//! the `seq` counter, all in the state directory with owner-only permissions.
//!
//! `seq` is reserved ahead in blocks: the upper end of the block is written (and fsynced)
//! before any number in it is used, and a restart continues after the block. So a crash can
//! skip numbers but never reuses one.

use std::path::{Path, PathBuf};

use greenops_runtime::secret::serialize_exposed;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::spool::write_atomically;

/// Numbers reserved per write of `seq.reserved`.
const SEQ_BLOCK: u64 = 1000;

/// Who this agent is to the collector; the credential is a [`SecretString`] (redacted in
/// `Debug`), written in clear only to `identity.json` (mode 0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub machine_key: String,
    #[serde(default)]
    pub machine_id: Option<String>,
    #[serde(default, serialize_with = "serialize_exposed")]
    pub agent_token: Option<SecretString>,
}

/// Identity plus the `seq` allocator.
#[derive(Debug)]
pub struct State {
    dir: PathBuf,
    pub identity: Identity,
    next_seq: u64,
    reserved: u64,
}

#[cfg(unix)]
fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(unix)]
fn restrict_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

// On Windows the installer creates the state directory under %ProgramData% with an ACL that
// grants only SYSTEM and Administrators (see packaging/windows).
#[cfg(not(unix))]
fn restrict(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(not(unix))]
fn restrict_dir(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Writes a secret file: atomically, readable by the owner only.
fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically(path, bytes)?;
    restrict(path)
}

/// An I/O failure on `path` in the state directory, as one sentence that names the path and
/// says what to do.
pub fn state_error(what: &str, path: &Path, e: &std::io::Error) -> anyhow::Error {
    let hint = match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "; run the agent as a user who may write there (the packaged services run as root), \
             or choose another directory with --state-dir (GREENOPS_STATE_DIR)"
        }
        _ => {
            "; choose another directory with --state-dir (GREENOPS_STATE_DIR) if this one cannot be used"
        }
    };
    anyhow::anyhow!("cannot {what} {}: {e}{hint}", path.display())
}

impl State {
    /// Loads the state in `dir`, creating the directory and a new `machine_key` on first use.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| state_error("create the state directory", dir, &e))?;
        restrict_dir(dir)
            .map_err(|e| state_error("restrict to its owner the state directory", dir, &e))?;
        let identity_path = dir.join("identity.json");
        let identity = match Self::read_identity(dir)? {
            Some(identity) => identity,
            None => {
                let identity = Identity {
                    machine_key: format!("mk-{}", uuid::Uuid::new_v4().simple()),
                    machine_id: None,
                    agent_token: None,
                };
                write_secret(&identity_path, &serde_json::to_vec_pretty(&identity)?)
                    .map_err(|e| state_error("write", &identity_path, &e))?;
                identity
            }
        };
        let reserved: u64 = std::fs::read_to_string(dir.join("seq.reserved"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Ok(Self {
            dir: dir.to_path_buf(),
            identity,
            next_seq: reserved + 1,
            reserved,
        })
    }

    /// The identity kept in `dir`, if there is one; creates nothing (for `status`).
    pub fn read_identity(dir: &Path) -> anyhow::Result<Option<Identity>> {
        let path = dir.join("identity.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{} is damaged: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(state_error("read", &path, &e)),
        }
    }

    /// Stores a new credential (from enrolment).
    pub fn save_credential(&mut self, machine_id: &str, agent_token: &str) -> anyhow::Result<()> {
        self.identity.machine_id = Some(machine_id.to_string());
        self.identity.agent_token = Some(agent_token.into());
        let path = self.dir.join("identity.json");
        write_secret(&path, &serde_json::to_vec_pretty(&self.identity)?)
            .map_err(|e| state_error("write", &path, &e))?;
        Ok(())
    }

    /// The next `seq`, reserving a new block on disk first when needed.
    pub fn next_seq(&mut self) -> anyhow::Result<u64> {
        if self.next_seq > self.reserved {
            let reserved = self.next_seq + SEQ_BLOCK - 1;
            let path = self.dir.join("seq.reserved");
            write_atomically(&path, reserved.to_string().as_bytes())
                .map_err(|e| state_error("write", &path, &e))?;
            self.reserved = reserved;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(seq)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        std::env::temp_dir().join(format!("greenops-state-{}", uuid::Uuid::new_v4().simple()))
    }

    #[test]
    fn machine_key_is_generated_once_and_kept_private() {
        let d = dir();
        let a = State::open(&d).unwrap();
        let b = State::open(&d).unwrap();
        assert_eq!(a.identity.machine_key, b.identity.machine_key);
        assert!(a.identity.machine_key.len() >= 16);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.join("identity.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_state_directory_that_cannot_be_created_is_named() {
        let d = dir();
        std::fs::create_dir_all(&d).unwrap();
        let file = d.join("a-file");
        std::fs::write(&file, b"").unwrap();
        let err = State::open(&file.join("state")).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "cannot create the state directory {}",
                file.join("state").display()
            )) && err.contains("--state-dir"),
            "{err}"
        );
        // Reading creates nothing.
        assert!(State::read_identity(&d.join("absent")).unwrap().is_none());
        assert!(!d.join("absent").exists());
    }

    #[test]
    fn seq_is_never_reused_across_restarts_or_crashes() {
        let d = dir();
        let mut s = State::open(&d).unwrap();
        let first: Vec<u64> = (0..5).map(|_| s.next_seq().unwrap()).collect();
        assert_eq!(first, vec![1, 2, 3, 4, 5]);
        drop(s); // a crash: nothing else written
        let mut s = State::open(&d).unwrap();
        let after = s.next_seq().unwrap();
        assert!(after > 5, "{after}");
        for _ in 0..2500 {
            s.next_seq().unwrap();
        }
        let last = s.next_seq().unwrap();
        drop(s);
        let mut s = State::open(&d).unwrap();
        assert!(s.next_seq().unwrap() > last);
    }

    #[test]
    fn credentials_persist_and_debug_hides_them() {
        let d = dir();
        let mut s = State::open(&d).unwrap();
        s.save_credential("m1", "gok_agent_secret").unwrap();
        let s = State::open(&d).unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(
            s.identity.agent_token.as_ref().map(|t| t.expose_secret()),
            Some("gok_agent_secret")
        );
        assert!(!format!("{s:?}").contains("gok_agent_secret"));
    }
}
