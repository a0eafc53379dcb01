//! The on-disk spool: every heartbeat is appended (and fsynced) before it is sent, and only
//! forgotten once the collector has acknowledged it, so a heartbeat survives collector outages,
//! `kill -9` and reboots.
//!
//! Format: a sequence of records `[len: u32 LE][crc32 of payload: u32 LE][payload: JSON]`.
//! A torn or corrupt record (a crash mid-append) ends the readable part: it and anything after
//! it are truncated away, never misread. Acknowledgements are kept in a separate small file
//! (`spool.acked`, the highest acknowledged `seq`), and the spool is compacted — rewritten
//! without acknowledged records, then atomically renamed — when most of it is dead.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use greenops_protocol::Heartbeat;

const HEADER: usize = 8;
/// Records bigger than this are corrupt by definition (a heartbeat is a few hundred bytes).
const MAX_RECORD: u32 = 64 * 1024;

/// Limits on what the spool keeps while the collector is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_bytes: u64,
    pub max_age_ms: i64,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_bytes: 50 * 1024 * 1024,
            max_age_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    acked_path: PathBuf,
    file: File,
    /// Unacknowledged heartbeats in `seq` order, with their encoded size.
    pending: Vec<(Heartbeat, u64)>,
    acked: u64,
    file_len: u64,
    bounds: Bounds,
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    fsync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn encode(hb: &Heartbeat) -> Vec<u8> {
    let payload = serde_json::to_vec(hb).unwrap_or_default();
    let mut record = Vec::with_capacity(HEADER + payload.len());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    record
}

/// Parses records from `bytes`; returns them with their sizes and the length of the valid
/// prefix (everything after it is torn or corrupt).
pub fn parse(bytes: &[u8]) -> (Vec<(Heartbeat, u64)>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
        if len > MAX_RECORD || bytes.len() - at - HEADER < len as usize {
            break;
        }
        let payload = &bytes[at + HEADER..at + HEADER + len as usize];
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(hb) = serde_json::from_slice::<Heartbeat>(payload) else {
            break;
        };
        let size = (HEADER + len as usize) as u64;
        out.push((hb, size));
        at += size as usize;
    }
    (out, at)
}

impl Spool {
    /// Opens (creating) the spool in `dir`, dropping a torn tail and acknowledged records.
    pub fn open(dir: &Path, bounds: Bounds) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("spool.bin");
        let acked_path = dir.join("spool.acked");
        let acked = std::fs::read_to_string(&acked_path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut bytes)?;
        let (records, valid) = parse(&bytes);
        if valid < bytes.len() {
            tracing::warn!(
                dropped_bytes = bytes.len() - valid,
                "the spool ended in a torn record (crash while writing); it was dropped"
            );
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        let pending: Vec<(Heartbeat, u64)> =
            records.into_iter().filter(|(h, _)| h.seq > acked).collect();
        let mut spool = Self {
            path,
            acked_path,
            file,
            pending,
            acked,
            file_len: valid as u64,
            bounds,
        };
        spool.compact_if_mostly_dead()?;
        Ok(spool)
    }

    /// Heartbeats waiting in the spool of `dir` and their bytes, read without changing
    /// anything (for `status`, which may run beside the agent and must create nothing).
    pub fn peek(dir: &Path) -> std::io::Result<(usize, u64)> {
        let bytes = match std::fs::read(dir.join("spool.bin")) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => return Err(e),
        };
        let acked: u64 = std::fs::read_to_string(dir.join("spool.acked"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let (records, _) = parse(&bytes);
        let pending = records.iter().filter(|(h, _)| h.seq > acked);
        Ok(pending.fold((0, 0), |(n, size), (_, s)| (n + 1, size + s)))
    }

    /// Appends a heartbeat durably (fsync) and enforces the bounds.
    pub fn append(&mut self, hb: Heartbeat) -> std::io::Result<()> {
        let record = encode(&hb);
        self.file.write_all(&record)?;
        self.file.sync_data()?;
        self.file_len += record.len() as u64;
        self.pending.push((hb, record.len() as u64));
        self.enforce_bounds()
    }

    /// Unacknowledged heartbeats, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &Heartbeat> {
        self.pending.iter().map(|(h, _)| h)
    }

    pub fn depth(&self) -> usize {
        self.pending.len()
    }

    pub fn pending_bytes(&self) -> u64 {
        self.pending.iter().map(|(_, s)| s).sum()
    }

    /// Forgets every heartbeat up to `seq` (the collector has it).
    pub fn ack(&mut self, seq: u64) -> std::io::Result<()> {
        if seq <= self.acked {
            return Ok(());
        }
        self.acked = seq;
        write_atomically(&self.acked_path, seq.to_string().as_bytes())?;
        self.pending.retain(|(h, _)| h.seq > seq);
        self.compact_if_mostly_dead()
    }

    fn compact_if_mostly_dead(&mut self) -> std::io::Result<()> {
        let live = self.pending_bytes();
        if self.file_len > 64 * 1024 && live * 2 < self.file_len
            || self.pending.is_empty() && self.file_len > 0
        {
            self.rewrite()?;
        }
        Ok(())
    }

    fn rewrite(&mut self) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(self.pending_bytes() as usize);
        for (h, _) in &self.pending {
            bytes.extend(encode(h));
        }
        write_atomically(&self.path, &bytes)?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        self.file_len = bytes.len() as u64;
        Ok(())
    }

    /// Drops the oldest heartbeats beyond the size or age bound, logging how many.
    fn enforce_bounds(&mut self) -> std::io::Result<()> {
        let newest = self
            .pending
            .last()
            .map(|(h, _)| h.sent_at.unix_timestamp() * 1000)
            .unwrap_or(0);
        let mut bytes = self.pending_bytes();
        let mut drop = 0;
        for (h, size) in &self.pending {
            let too_old = newest - h.sent_at.unix_timestamp() * 1000 > self.bounds.max_age_ms;
            if bytes > self.bounds.max_bytes || too_old {
                bytes -= size;
                drop += 1;
            } else {
                break;
            }
        }
        if drop > 0 {
            let last = self.pending[drop - 1].0.seq;
            tracing::warn!(
                dropped = drop,
                "spool bound reached: the oldest heartbeats were dropped"
            );
            self.ack(last)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use greenops_protocol::Session;

    use super::*;

    fn hb(seq: u64, at_s: i64) -> Heartbeat {
        Heartbeat {
            seq,
            sent_at: time::OffsetDateTime::from_unix_timestamp(1_795_770_900 + at_s).unwrap(),
            idle_seconds: Some(seq as f64),
            session: Session::Active,
            cpu_usage_ratio: Some(0.5),
            memory_usage_ratio: None,
            uptime_seconds: Some(10),
            idle_source: None,
        }
    }

    fn dir() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("greenops-spool-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn survives_reopen_and_forgets_acknowledged() {
        let d = dir();
        let mut s = Spool::open(&d, Bounds::default()).unwrap();
        for i in 1..=5 {
            s.append(hb(i, i as i64 * 60)).unwrap();
        }
        s.ack(2).unwrap();
        drop(s);
        let s = Spool::open(&d, Bounds::default()).unwrap();
        assert_eq!(
            s.pending().map(|h| h.seq).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_the_rest_kept() {
        let d = dir();
        let mut s = Spool::open(&d, Bounds::default()).unwrap();
        for i in 1..=3 {
            s.append(hb(i, 0)).unwrap();
        }
        drop(s);
        let path = d.join("spool.bin");
        let full = std::fs::read(&path).unwrap();
        // Every possible crash point inside the last record.
        let last = encode(&hb(3, 0)).len();
        for cut in 1..last {
            std::fs::write(&path, &full[..full.len() - cut]).unwrap();
            let s = Spool::open(&d, Bounds::default()).unwrap();
            assert_eq!(
                s.pending().map(|h| h.seq).collect::<Vec<_>>(),
                vec![1, 2],
                "cut {cut}"
            );
            drop(s);
            // The torn tail was truncated, so appending continues cleanly.
            let mut s = Spool::open(&d, Bounds::default()).unwrap();
            s.append(hb(3, 0)).unwrap();
            drop(s);
            assert_eq!(std::fs::read(&path).unwrap(), full);
        }
    }

    #[test]
    fn a_corrupt_record_ends_the_readable_part() {
        let d = dir();
        let mut s = Spool::open(&d, Bounds::default()).unwrap();
        for i in 1..=3 {
            s.append(hb(i, 0)).unwrap();
        }
        drop(s);
        let path = d.join("spool.bin");
        let mut bytes = std::fs::read(&path).unwrap();
        let second = encode(&hb(1, 0)).len() + HEADER + 2;
        bytes[second] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        let s = Spool::open(&d, Bounds::default()).unwrap();
        assert_eq!(s.pending().map(|h| h.seq).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn bounds_drop_the_oldest_first() {
        let d = dir();
        let bounds = Bounds {
            max_bytes: 10_000_000,
            max_age_ms: 3600 * 1000,
        };
        let mut s = Spool::open(&d, bounds).unwrap();
        for i in 1..=120 {
            s.append(hb(i, i as i64 * 60)).unwrap();
        }
        // 120 minutes of heartbeats, one hour kept.
        let seqs: Vec<u64> = s.pending().map(|h| h.seq).collect();
        assert_eq!(seqs.first(), Some(&60));
        assert_eq!(seqs.last(), Some(&120));
        let size = encode(&hb(25, 0)).len() as u64;
        let mut s = Spool::open(
            &dir(),
            Bounds {
                max_bytes: size * 10,
                max_age_ms: i64::MAX,
            },
        )
        .unwrap();
        for i in 1..=25 {
            s.append(hb(i, 0)).unwrap();
        }
        assert_eq!(s.depth(), 10);
        assert_eq!(s.pending().next().unwrap().seq, 16);
    }

    #[test]
    fn compaction_keeps_the_file_small() {
        let d = dir();
        let mut s = Spool::open(&d, Bounds::default()).unwrap();
        for i in 1..=2000 {
            s.append(hb(i, 0)).unwrap();
            if i % 10 == 0 {
                s.ack(i).unwrap();
            }
        }
        let len = std::fs::metadata(d.join("spool.bin")).unwrap().len();
        assert!(len < 128 * 1024, "{len}");
        assert_eq!(s.depth(), 0);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_never_invents_records(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let (records, valid) = parse(&bytes);
            proptest::prop_assert!(valid <= bytes.len());
            proptest::prop_assert!(records.len() <= bytes.len() / HEADER);
        }
    }
}
