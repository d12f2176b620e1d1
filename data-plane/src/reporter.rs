//! Trace reporting. Requests never wait on it: `submit` is a non-blocking send
//! into a bounded queue. A background loop batches traces into the spool,
//! streams them to a control-plane replica, and drops each batch only once
//! the control plane acks it as stored; after a reconnect (to the next
//! replica) it resends every unacked batch, oldest first.

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
use crate::control_plane::Rotation;
use crate::health::{Sample, WindowBuilder};
use crate::metrics::Metrics;
use crate::request::Received;
use crate::spool::{Batch, Spool};
use crate::state_dir::StateDir;

const MAX_BATCH: usize = 256;
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How long shutdown waits for outstanding acks before persisting the rest.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// Batches queued on a stream ahead of the network; the rest wait in the
/// spool, so spilled ones are read back only when their turn comes.
const OUTBOUND_BATCHES: usize = 32;

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

/// Unacked traces kept: in memory, and in memory and on disk together.
#[derive(Debug, Clone, Copy)]
pub struct SpoolLimits {
    pub memory: usize,
    pub total: usize,
}

pub struct ReportLoop {
    queue: mpsc::Receiver<pb::Trace>,
    /// Probe results, for the health windows.
    samples: mpsc::Receiver<Sample>,
    windows: WindowBuilder,
    /// How often health windows close and go out with the next batch.
    health_every: Duration,
    control_planes: Rotation,
    metrics: Arc<Metrics>,
    limits: SpoolLimits,
    /// Holds the directory's lock while the spool may still write to it.
    state: Arc<StateDir>,
}

/// Creates the reporter handle, the sender for probe results, and the loop
/// that drains both.
pub fn reporter(
    control_planes: Rotation,
    metrics: Arc<Metrics>,
    state: Arc<StateDir>,
    limits: SpoolLimits,
    node_id: String,
    health_every: Duration,
) -> (TraceReporter, mpsc::Sender<Sample>, ReportLoop) {
    // The queue holds traces not yet spooled; in memory, so bounded like it.
    let (tx, rx) = mpsc::channel(limits.memory.max(MAX_BATCH));
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
            control_planes,
            metrics,
            limits,
            state,
        },
    )
}

struct Connection {
    control_plane: String,
    outbound: mpsc::Sender<pb::ReportRequest>,
    acks: tonic::Streaming<pb::ReportResponse>,
    /// The newest batch queued on this stream.
    sent: u64,
}

impl ReportLoop {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut spool = Spool::open(
            self.state.spool_dir(),
            self.limits.memory,
            self.limits.total,
            self.metrics.clone(),
        )
        .await;
        let mut batch: Vec<pb::Trace> = Vec::with_capacity(MAX_BATCH);
        let mut conn: Option<Connection> = None;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut reconnect_at = Instant::now();
        let mut drain_until: Option<Instant> = None;
        let mut queue_open = true;
        let mut ticker = tokio::time::interval(FLUSH_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut health: Vec<pb::HealthWindow> = Vec::new();
        let mut windows_closed_at = Instant::now();

        loop {
            if let Some(deadline) = drain_until {
                if !queue_open && spool.is_empty() && batch.is_empty() {
                    tracing::info!("all traces acked");
                    return;
                }
                if Instant::now() >= deadline {
                    while let Ok(trace) = self.queue.try_recv() {
                        batch.push(trace);
                    }
                    self.flush(&mut batch, &mut health, &mut spool).await;
                    let persisted = spool.persist().await;
                    tracing::warn!(
                        persisted,
                        "shutting down with unacked traces; persisted them for the next start"
                    );
                    return;
                }
            }
            tokio::select! {
                () = shutdown.cancelled(), if drain_until.is_none() => {
                    drain_until = Some(Instant::now() + DRAIN_GRACE);
                    self.queue.close();
                }
                trace = self.queue.recv(), if queue_open => match trace {
                    Some(trace) => {
                        for sample in Sample::from_trace(&trace) {
                            self.windows.add(&sample);
                        }
                        batch.push(trace);
                        if batch.len() >= MAX_BATCH {
                            self.flush(&mut batch, &mut health, &mut spool).await;
                        }
                    }
                    None => {
                        // Closed: only during shutdown. Flush what is left.
                        queue_open = false;
                        health.extend(self.windows.drain(Received::now().unix_ms));
                        self.flush(&mut batch, &mut health, &mut spool).await;
                        drain_until.get_or_insert(Instant::now() + DRAIN_GRACE);
                    }
                },
                Some(sample) = self.samples.recv() => self.windows.add(&sample),
                _ = ticker.tick() => {
                    if windows_closed_at.elapsed() >= self.health_every {
                        windows_closed_at = Instant::now();
                        health.extend(self.windows.drain(Received::now().unix_ms));
                    }
                    self.flush(&mut batch, &mut health, &mut spool).await;
                    if conn.is_none() && Instant::now() >= reconnect_at && !spool.is_empty() {
                        let replica = self.control_planes.next_replica();
                        let (url, channel) = (replica.url.clone(), replica.channel.clone());
                        match connect(url.clone(), channel, &mut spool).await {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                let wait = backoff.next_delay();
                                tracing::warn!(control_plane = %url, error = %e, retry_in = ?wait, unacked = spool.traces(), "cannot report traces; keeping them");
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
                        spool.ack(ack.batch_id).await;
                        backoff.reset();
                    }
                    Ok(Some(ack)) => {
                        // Not stored: keep the batch and resend it, elsewhere, after a back-off.
                        tracing::warn!(batch = ack.batch_id, error = %ack.error, "control plane could not store traces");
                        conn = None;
                        reconnect_at = Instant::now() + backoff.next_delay();
                    }
                    Ok(None) | Err(_) => {
                        if let Some(c) = conn.take() {
                            tracing::warn!(control_plane = %c.control_plane, unacked = spool.traces(), "trace report stream closed; keeping unacked traces");
                        }
                        reconnect_at = Instant::now() + backoff.next_delay();
                    }
                },
            }
            pump(&mut spool, &mut conn).await;
        }
    }

    /// Moves the open batch (and closed health windows) into the spool.
    async fn flush(
        &self,
        batch: &mut Vec<pb::Trace>,
        health: &mut Vec<pb::HealthWindow>,
        spool: &mut Spool,
    ) {
        if batch.is_empty() && health.is_empty() {
            return;
        }
        spool
            .add(Batch {
                traces: std::mem::replace(batch, Vec::with_capacity(MAX_BATCH)),
                health: std::mem::take(health),
            })
            .await;
    }
}

/// Opens a report stream with the oldest unacked batches already queued on it.
async fn connect(
    control_plane: String,
    channel: Channel,
    spool: &mut Spool,
) -> Result<Connection, tonic::Status> {
    let (outbound, rx) = mpsc::channel(OUTBOUND_BATCHES);
    let mut sent = 0;
    fill(&outbound, &mut sent, spool).await;
    let acks = TraceServiceClient::new(channel)
        .report(ReceiverStream::new(rx))
        .await?
        .into_inner();
    tracing::info!(%control_plane, unacked = spool.traces(), "trace report stream open");
    Ok(Connection {
        control_plane,
        outbound,
        acks,
        sent,
    })
}

/// Queues the batches after the last one sent while the stream has room.
async fn pump(spool: &mut Spool, conn: &mut Option<Connection>) {
    if let Some(c) = conn.as_mut()
        && !fill(&c.outbound, &mut c.sent, spool).await
    {
        // The stream is gone; its batches stay spooled for the next one.
        *conn = None;
    }
}

/// Returns false when the stream is closed.
async fn fill(
    outbound: &mpsc::Sender<pb::ReportRequest>,
    sent: &mut u64,
    spool: &mut Spool,
) -> bool {
    loop {
        let permit = match outbound.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => return true,
            Err(mpsc::error::TrySendError::Closed(())) => return false,
        };
        let Some(request) = spool.next_after(*sent).await else {
            return true;
        };
        *sent = request.batch_id;
        permit.send(request);
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
