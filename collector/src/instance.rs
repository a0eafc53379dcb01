//! The running collector of a data directory, as the command line finds it: `serve` on an
//! embedded (SQLite) database writes `<data_dir>/collector.json` — its address and database —
//! and holds a lock on it while it runs. `greenops` commands given no database use the one of
//! the collector running there, so the commands of the README work against `make run` (whose
//! demo keeps its own `demo.db`) as well as against `make serve`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name inside the data directory.
pub const FILE_NAME: &str = "collector.json";

/// What a running collector tells the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub pid: u32,
    /// Base URL of its one port, e.g. `http://127.0.0.1:9850`.
    pub url: String,
    /// Its database: an SQLite URL with an absolute path (never a URL with a password).
    pub database: String,
    /// `serve --demo`: a simulated office in its own database.
    pub demo: bool,
}

/// Held by `serve` while it runs: the locked file, removed when dropped.
#[derive(Debug)]
pub struct Announcement {
    path: PathBuf,
    _file: File,
}

impl Drop for Announcement {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An SQLite URL with its file's absolute path (the file exists once the store is open);
/// `None` for any other database.
pub fn absolute_sqlite_url(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, format!("?{query}")),
        None => (rest, String::new()),
    };
    let absolute = std::fs::canonicalize(path).ok()?;
    Some(format!("sqlite://{}{query}", absolute.display()))
}

/// Writes and locks `<data_dir>/collector.json`. `None` when another running collector holds
/// it (the first one stays the one commands find) or the directory cannot be written: the
/// collector runs anyway, commands then need `--database-url`.
pub fn announce(data_dir: &Path, running: &Running) -> Option<Announcement> {
    let path = data_dir.join(FILE_NAME);
    let result = (|| -> std::io::Result<Option<Announcement>> {
        std::fs::create_dir_all(data_dir)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if file.try_lock().is_err() {
            return Ok(None);
        }
        file.set_len(0)?;
        file.write_all(&serde_json::to_vec_pretty(running).unwrap_or_default())?;
        file.sync_all()?;
        Ok(Some(Announcement {
            path: path.clone(),
            _file: file,
        }))
    })();
    match result {
        Ok(Some(held)) => Some(held),
        Ok(None) => {
            tracing::info!(
                file = %path.display(),
                "another collector runs on this data directory; commands find that one"
            );
            None
        }
        Err(e) => {
            tracing::debug!(file = %path.display(), error = %e, "cannot announce this collector");
            None
        }
    }
}

/// The collector running on `data_dir`, if one is (a file left by one that died is unlocked,
/// and ignored).
pub fn find(data_dir: &Path) -> Option<Running> {
    let mut file = File::open(data_dir.join(FILE_NAME)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            file.read_to_string(&mut text).ok()?;
            serde_json::from_str(&text).ok()
        }
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_collector_is_found_until_it_stops() {
        let dir = std::env::temp_dir().join(format!("greenops-inst-{}", uuid::Uuid::new_v4()));
        let running = Running {
            pid: std::process::id(),
            url: "http://127.0.0.1:9850".into(),
            database: "sqlite:///tmp/x/demo.db".into(),
            demo: true,
        };
        assert_eq!(find(&dir), None);
        let held = announce(&dir, &running).unwrap();
        assert_eq!(find(&dir), Some(running.clone()));
        // A second collector on the same directory leaves the first one announced.
        let other = Running {
            demo: false,
            ..running.clone()
        };
        assert!(announce(&dir, &other).is_none());
        assert_eq!(find(&dir), Some(running.clone()));
        drop(held);
        assert_eq!(find(&dir), None);
        assert!(!dir.join(FILE_NAME).exists());
        // A file left behind by a collector that died (no lock) is ignored.
        std::fs::write(dir.join(FILE_NAME), serde_json::to_vec(&running).unwrap()).unwrap();
        assert_eq!(find(&dir), None);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn sqlite_urls_become_absolute_and_others_are_not_announced() {
        let dir = std::env::temp_dir().join(format!("greenops-inst-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("demo.db"), b"").unwrap();
        let abs = std::fs::canonicalize(dir.join("demo.db")).unwrap();
        assert_eq!(
            absolute_sqlite_url(&format!("sqlite://{}/demo.db?mode=rwc", dir.display())),
            Some(format!("sqlite://{}?mode=rwc", abs.display()))
        );
        assert_eq!(absolute_sqlite_url("postgres://u:p@db/greenops"), None);
        std::fs::remove_dir_all(&dir).ok();
    }
}
