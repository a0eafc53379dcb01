//! Heartbeat ingest: a bounded queue in front of one group-commit writer.
//!
//! Handlers validate and authenticate, then [`Ingest::submit`] a job and wait. The writer takes
//! every job that is already queued (up to `max_batch_heartbeats`, waiting at most
//! `max_batch_wait_ms` to fill a batch), commits them in one transaction, then answers every
//! waiting request. A 2xx therefore always means "committed".

mod credentials;
pub mod plan;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use credentials::CredentialCache;

use crate::exposition::ProcessMetrics;
use crate::live::LiveAccounting;
use crate::settings::IngestSettings;
use crate::store::ingest::RateBookCache;
use crate::store::{HeartbeatJob, JobOutcome, Store, StoreError};

/// Why a job was not committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The store is unreachable, or the commit did not finish in time (503).
    #[error("the store is unavailable")]
    Unavailable,
    /// Too many requests are already waiting (503 with Retry-After).
    #[error("the ingest queue is full")]
    Overloaded,
    /// The commit failed for another reason (500; logged by the writer).
    #[error("the commit failed")]
    Internal,
}

struct Pending {
    job: HeartbeatJob,
    reply: oneshot::Sender<Result<JobOutcome, IngestError>>,
}

/// Handle to the writers; cheap to clone.
#[derive(Debug, Clone)]
pub struct Ingest {
    /// One queue per writer; a machine always goes to the same writer, so its heartbeats are
    /// committed in the order they arrived.
    queues: Arc<[mpsc::Sender<Pending>]>,
    commit_timeout: Duration,
    /// The rate book the writers price with (shared with readers that need rates).
    books: Arc<RateBookCache>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("job", &self.job).finish()
    }
}

impl Ingest {
    /// Starts `writers` writer tasks. They stop after every `Ingest` handle is dropped and
    /// their queues are drained, so awaiting the returned handle flushes everything accepted.
    pub fn start(
        store: Arc<dyn Store>,
        accounting: Arc<LiveAccounting>,
        settings: &IngestSettings,
        writers: usize,
        metrics: Arc<ProcessMetrics>,
    ) -> (Self, JoinHandle<()>) {
        let writers = writers.max(1);
        let books = RateBookCache::new();
        let mut queues = Vec::with_capacity(writers);
        let mut handles = Vec::with_capacity(writers);
        for _ in 0..writers {
            let (queue, rx) = mpsc::channel(settings.queue_capacity.div_ceil(writers));
            let writer = Writer {
                rx,
                store: store.clone(),
                accounting: accounting.clone(),
                books: books.clone(),
                max_batch: settings.max_batch_heartbeats,
                max_wait: Duration::from_millis(settings.max_batch_wait_ms),
                metrics: metrics.clone(),
            };
            queues.push(queue);
            handles.push(tokio::spawn(writer.run()));
        }
        let all = tokio::spawn(async move {
            for h in handles {
                let _ = h.await;
            }
        });
        (
            Self {
                queues: queues.into(),
                commit_timeout: Duration::from_millis(settings.commit_timeout_ms),
                books,
            },
            all,
        )
    }

    /// The rate book cache the writers keep up to date.
    pub fn books(&self) -> Arc<RateBookCache> {
        self.books.clone()
    }

    /// Queues a job and waits until it is committed (or failed, or timed out).
    pub async fn submit(&self, job: HeartbeatJob) -> Result<JobOutcome, IngestError> {
        let (reply, answer) = oneshot::channel();
        let shard = shard_of(&job.machine_id, self.queues.len());
        self.queues[shard]
            .try_send(Pending { job, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => IngestError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => IngestError::Unavailable,
            })?;
        match tokio::time::timeout(self.commit_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(IngestError::Internal),
            // The job may still commit later; the agent retries and gets a duplicate.
            Err(_) => Err(IngestError::Unavailable),
        }
    }
}

/// Which writer a machine belongs to (FNV-1a of its id).
fn shard_of(machine_id: &str, shards: usize) -> usize {
    let hash = machine_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    usize::try_from(hash % shards as u64).unwrap_or(0)
}

struct Writer {
    rx: mpsc::Receiver<Pending>,
    store: Arc<dyn Store>,
    accounting: Arc<LiveAccounting>,
    books: Arc<RateBookCache>,
    max_batch: usize,
    max_wait: Duration,
    metrics: Arc<ProcessMetrics>,
}

impl Writer {
    async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let batch = self.fill(first).await;
            self.commit(batch).await;
        }
        tracing::debug!("ingest writer drained and stopped");
    }

    /// Collects queued jobs behind `first` until the batch is full, the queue is empty and
    /// the wait is over, or the queue is closed.
    async fn fill(&mut self, first: Pending) -> Vec<Pending> {
        let mut size = first.job.heartbeats.len();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + self.max_wait;
        while size < self.max_batch {
            let next = match self.rx.try_recv() {
                Ok(p) => Some(p),
                Err(mpsc::error::TryRecvError::Empty) if !self.max_wait.is_zero() => {
                    tokio::time::timeout_at(deadline, self.rx.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
            let Some(p) = next else { break };
            size += p.job.heartbeats.len();
            batch.push(p);
        }
        batch
    }

    async fn commit(&mut self, batch: Vec<Pending>) {
        let (jobs, replies): (Vec<HeartbeatJob>, Vec<_>) =
            batch.into_iter().map(|p| (p.job, p.reply)).unzip();
        let heartbeats: usize = jobs.iter().map(|j| j.heartbeats.len()).sum();
        let started = Instant::now();
        let planner = plan::Accountant {
            max_clock_skew_ms: crate::settings::secs_to_ms(
                self.accounting.get().max_clock_skew_seconds,
            ),
        };
        let result = self
            .store
            .commit_heartbeats(&jobs, &self.books, &planner)
            .await;
        self.metrics.observe_commit(heartbeats, started.elapsed());
        match result {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A requester that gave up is fine: its heartbeats are committed anyway.
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let answer = match &e {
                    StoreError::Unavailable(_) => IngestError::Unavailable,
                    _ => IngestError::Internal,
                };
                tracing::error!(error = %e, heartbeats, "group commit failed");
                for reply in replies {
                    let _ = reply.send(Err(answer));
                }
                if answer == IngestError::Unavailable {
                    // Fail what is queued now instead of retrying the dead store once per
                    // batch: those requesters get their 503 at once and retry later.
                    while let Ok(p) = self.rx.try_recv() {
                        let _ = p.reply.send(Err(IngestError::Unavailable));
                    }
                }
            }
        }
    }
}
