//! Trace reporting. Requests never wait on it: `submit` is a non-blocking send
//! into a bounded queue. A background loop batches traces, streams them to the
//! control plane, and keeps every batch until the control plane acks it as
//! stored, resending after a reconnect. Only past the spool's capacity are
//! traces dropped, and each drop is counted and logged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_proto::v1 as pb;
use switchyard_proto::v1::trace_service_client::TraceServiceClient;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::backoff::Backoff;
use crate::health::{Sample, WindowBuilder};
use crate::metrics::Metrics;
use crate::request::Received;

const MAX_BATCH: usize = 256;
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How long shutdown waits for outstanding acks.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct TraceReporter {
    queue: mpsc::Sender<pb::Trace>,
    metrics: Arc<Metrics>,
}

impl TraceReporter {
    pub fn submit(&self, trace: pb::Trace) {
        if let Err(e) = self.queue.try_send(trace) {
            self.metrics.traces_dropped.inc();
            let trace_id = match &e {
                mpsc::error::TrySendError::Full(t) | mpsc::error::TrySendError::Closed(t) => {
                    t.trace_id.clone()
                }
            };
            tracing::warn!(%trace_id, "trace dropped: report queue full");
        }
    }
}

pub struct ReportLoop {
    queue: mpsc::Receiver<pb::Trace>,
    /// Probe results, for the health windows.
    samples: mpsc::Receiver<Sample>,
    windows: WindowBuilder,
    /// How often health windows close and go out with the next batch.
    health_every: Duration,
    client: TraceServiceClient<Channel>,
    metrics: Arc<Metrics>,
    /// Most traces kept while unacked.
    spool_capacity: usize,
}

/// Creates the reporter handle, the sender for probe results, and the loop
/// that drains both.
pub fn reporter(
    channel: Channel,
    metrics: Arc<Metrics>,
    spool_capacity: usize,
    node_id: String,
    health_every: Duration,
) -> (TraceReporter, mpsc::Sender<Sample>, ReportLoop) {
    let (tx, rx) = mpsc::channel(spool_capacity.max(MAX_BATCH));
    let (samples_tx, samples) = mpsc::channel(1024);
    (
        TraceReporter {
            queue: tx,
            metrics: metrics.clone(),
        },
        samples_tx,
        ReportLoop {
            queue: rx,
            samples,
            windows: WindowBuilder::new(node_id, Received::now().unix_ms),
            health_every,
            client: TraceServiceClient::new(channel),
            metrics,
            spool_capacity,
        },
    )
}

struct Connection {
    outbound: mpsc::Sender<pb::ReportRequest>,
    acks: tonic::Streaming<pb::ReportResponse>,
}

/// What one batch carries: traces, and the health windows closed since the last one.
struct Batch {
    traces: Vec<pb::Trace>,
    health: Vec<pb::HealthWindow>,
}

#[derive(Default)]
struct Spool {
    next_batch: u64,
    unacked: BTreeMap<u64, Batch>,
    traces: usize,
    windows: usize,
}

/// Health windows kept while unacked. Past it the oldest go first: the control
/// plane judges on minutes of windows, so old ones are worth little, and unlike
/// traces they are aggregates nobody asks for one by one.
const MAX_SPOOLED_WINDOWS: usize = 20_000;

impl Spool {
    fn add(&mut self, batch: Batch, capacity: usize, metrics: &Metrics) -> u64 {
        self.next_batch += 1;
        self.traces += batch.traces.len();
        self.windows += batch.health.len();
        self.unacked.insert(self.next_batch, batch);
        self.shed_windows();
        while self.traces > capacity {
            let Some((_, oldest)) = self.unacked.pop_first() else {
                break;
            };
            self.windows -= oldest.health.len();
            let oldest = oldest.traces;
            self.traces -= oldest.len();
            metrics.traces_dropped.inc_by(oldest.len() as u64);
            tracing::error!(
                dropped = oldest.len(),
                "trace spool full: dropped the oldest unacked batch"
            );
        }
        metrics
            .trace_spool_depth
            .set(i64::try_from(self.traces).unwrap_or(i64::MAX));
        self.next_batch
    }

    /// Drops the oldest batches' health windows while there are too many;
    /// a batch left with nothing goes.
    fn shed_windows(&mut self) {
        let mut shed = 0;
        while self.windows > MAX_SPOOLED_WINDOWS {
            let Some((&id, oldest)) = self.unacked.iter_mut().find(|(_, b)| !b.health.is_empty())
            else {
                break;
            };
            shed += oldest.health.len();
            self.windows -= oldest.health.len();
            oldest.health.clear();
            if oldest.traces.is_empty() {
                self.unacked.remove(&id);
            }
        }
        if shed > 0 {
            tracing::warn!(
                shed,
                "health window spool full: dropped the oldest unacked windows"
            );
        }
    }

    fn ack(&mut self, batch_id: u64, metrics: &Metrics) {
        if let Some(batch) = self.unacked.remove(&batch_id) {
            self.traces -= batch.traces.len();
            self.windows -= batch.health.len();
        }
        metrics
            .trace_spool_depth
            .set(i64::try_from(self.traces).unwrap_or(i64::MAX));
    }
}

impl ReportLoop {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut spool = Spool::default();
        let mut batch: Vec<pb::Trace> = Vec::with_capacity(MAX_BATCH);
        let mut conn: Option<Connection> = None;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut reconnect_at = Instant::now();
        let mut drain_until: Option<Instant> = None;
        let mut ticker = tokio::time::interval(FLUSH_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut health: Vec<pb::HealthWindow> = Vec::new();
        let mut windows_closed_at = Instant::now();

        loop {
            if let Some(deadline) = drain_until {
                if spool.traces == 0 && batch.is_empty() {
                    tracing::info!("all traces acked");
                    return;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        unacked = spool.traces + batch.len(),
                        "shutting down with unacked traces"
                    );
                    return;
                }
            }
            tokio::select! {
                () = shutdown.cancelled(), if drain_until.is_none() => {
                    drain_until = Some(Instant::now() + DRAIN_GRACE);
                    self.queue.close();
                }
                trace = self.queue.recv() => match trace {
                    Some(trace) => {
                        for sample in Sample::from_trace(&trace) {
                            self.windows.add(&sample);
                        }
                        batch.push(trace);
                        if batch.len() >= MAX_BATCH {
                            self.flush(&mut batch, &mut health, &mut spool, &mut conn);
                        }
                    }
                    None => {
                        // Closed: only during shutdown. Flush what is left.
                        health.extend(self.windows.drain(Received::now().unix_ms));
                        self.flush(&mut batch, &mut health, &mut spool, &mut conn);
                        drain_until.get_or_insert(Instant::now() + DRAIN_GRACE);
                    }
                },
                Some(sample) = self.samples.recv() => self.windows.add(&sample),
                _ = ticker.tick() => {
                    if windows_closed_at.elapsed() >= self.health_every {
                        windows_closed_at = Instant::now();
                        health.extend(self.windows.drain(Received::now().unix_ms));
                    }
                    self.flush(&mut batch, &mut health, &mut spool, &mut conn);
                    if conn.is_none() && Instant::now() >= reconnect_at && !spool.unacked.is_empty() {
                        match self.connect(&spool).await {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                let wait = backoff.next_delay();
                                tracing::warn!(error = %e, retry_in = ?wait, unacked = spool.traces, "cannot report traces; keeping them");
                                reconnect_at = Instant::now() + wait;
                            }
                        }
                    }
                }
                ack = next_ack(&mut conn) => match ack {
                    Ok(Some(ack)) if ack.stored => {
                        if ack.rejected > 0 {
                            tracing::warn!(batch = ack.batch_id, rejected = ack.rejected, error = %ack.error, "control plane discarded invalid traces");
                        }
                        spool.ack(ack.batch_id, &self.metrics);
                        backoff.reset();
                    }
                    Ok(Some(ack)) => {
                        // Not stored: keep the batch and resend it after a back-off.
                        tracing::warn!(batch = ack.batch_id, error = %ack.error, "control plane could not store traces");
                        conn = None;
                        reconnect_at = Instant::now() + backoff.next_delay();
                    }
                    Ok(None) | Err(_) => {
                        conn = None;
                        reconnect_at = Instant::now() + backoff.next_delay();
                    }
                },
            }
        }
    }

    /// Moves the open batch (and closed health windows) into the spool and
    /// sends it if connected.
    fn flush(
        &self,
        batch: &mut Vec<pb::Trace>,
        health: &mut Vec<pb::HealthWindow>,
        spool: &mut Spool,
        conn: &mut Option<Connection>,
    ) {
        if batch.is_empty() && health.is_empty() {
            return;
        }
        let next = Batch {
            traces: std::mem::replace(batch, Vec::with_capacity(MAX_BATCH)),
            health: std::mem::take(health),
        };
        let batch_id = spool.add(next, self.spool_capacity, &self.metrics);
        if let Some(c) = conn.as_ref()
            && let Some(batch) = spool.unacked.get(&batch_id)
        {
            let request = pb::ReportRequest {
                batch_id,
                traces: batch.traces.clone(),
                health: batch.health.clone(),
            };
            if c.outbound.try_send(request).is_err() {
                // The stream is stuck or gone; the batch stays spooled for the next connection.
                *conn = None;
            }
        }
    }

    /// Opens a report stream and resends every unacked batch, oldest first.
    async fn connect(&mut self, spool: &Spool) -> Result<Connection, tonic::Status> {
        let (tx, rx) = mpsc::channel(spool.unacked.len() + 64);
        for (&batch_id, batch) in &spool.unacked {
            let request = pb::ReportRequest {
                batch_id,
                traces: batch.traces.clone(),
                health: batch.health.clone(),
            };
            if tx.try_send(request).is_err() {
                break;
            }
        }
        let acks = self
            .client
            .report(ReceiverStream::new(rx))
            .await?
            .into_inner();
        tracing::info!(resent = spool.unacked.len(), "trace report stream open");
        Ok(Connection { outbound: tx, acks })
    }
}

async fn next_ack(
    conn: &mut Option<Connection>,
) -> Result<Option<pb::ReportResponse>, tonic::Status> {
    match conn {
        Some(c) => c.acks.message().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(traces: usize, windows: usize) -> Batch {
        Batch {
            traces: vec![pb::Trace::default(); traces],
            health: vec![pb::HealthWindow::default(); windows],
        }
    }

    #[test]
    fn old_health_windows_are_shed_first_and_traces_are_kept() {
        let metrics = Metrics::new();
        let mut spool = Spool::default();
        let only_windows = spool.add(batch(0, 10_000), 100, &metrics);
        let with_traces = spool.add(batch(5, 10_000), 100, &metrics);
        assert_eq!(spool.windows, 20_000);
        spool.add(batch(0, 1), 100, &metrics);
        // The oldest windows went, and their batch with them; the traces stay.
        assert!(!spool.unacked.contains_key(&only_windows));
        assert_eq!((spool.windows, spool.traces), (10_001, 5));
        spool.add(batch(0, 10_000), 100, &metrics);
        let kept = &spool.unacked[&with_traces];
        assert_eq!((kept.traces.len(), kept.health.len()), (5, 0));
        assert_eq!(spool.windows, 10_001);
        spool.ack(with_traces, &metrics);
        assert_eq!(spool.traces, 0);
    }
}
