//! A data plane's graceful stop, in order: readiness turns false (HTTP
//! `/readyz` and the gRPC health service), the node keeps serving for the
//! drain delay so load balancers notice, then stops accepting connections and
//! lets the requests under way finish within the grace period. Requests still
//! running after it are cut (traced as cancelled, their clients told to
//! retry). Last, every trace is flushed to the control plane.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchyard_proto::v1::inference_service_server::InferenceServiceServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::edge::grpc::InferenceApi;
use crate::engine::Engine;

/// How long requests cut at the end of the grace may take to hand over
/// their traces (they only record and return).
const CUT_SETTLE: Duration = Duration::from_secs(5);

pub struct Drain {
    /// Cancelled by whoever wants the node to stop (SIGTERM in the binary).
    pub requested: CancellationToken,
    pub draining: Arc<AtomicBool>,
    pub health: tonic_health::server::HealthReporter,
    pub drain_delay: Duration,
    pub grace: Duration,
    /// Tells both servers to stop accepting and drain their connections.
    pub stop_accepting: CancellationToken,
    pub servers: [JoinHandle<()>; 2],
    pub engine: Arc<Engine>,
    /// The snapshot subscriber and the prober, which keep running while
    /// requests drain.
    pub background: CancellationToken,
    pub reporter: CancellationToken,
    pub reporter_task: JoinHandle<()>,
}

impl Drain {
    pub async fn run(self) {
        self.requested.cancelled().await;
        self.draining.store(true, Ordering::Relaxed);
        self.health
            .set_not_serving::<InferenceServiceServer<InferenceApi>>()
            .await;
        tracing::info!(
            in_flight = self.engine.in_flight(),
            drain_delay_ms = self.drain_delay.as_millis() as u64,
            grace_ms = self.grace.as_millis() as u64,
            "shutting down: readiness is false"
        );
        tokio::time::sleep(self.drain_delay).await;
        self.stop_accepting.cancel();

        let servers = futures::future::join_all(self.servers);
        tokio::pin!(servers);
        let in_time = tokio::time::timeout(self.grace, &mut servers).await.is_ok();
        if !in_time {
            tracing::warn!(
                cut = self.engine.in_flight(),
                "shutdown grace over: cutting the requests still under way"
            );
            self.engine.cut_in_flight();
            if tokio::time::timeout(CUT_SETTLE, &mut servers)
                .await
                .is_err()
            {
                tracing::warn!("connections still open after the cut; closing anyway");
            }
        }
        if tokio::time::timeout(CUT_SETTLE, self.engine.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.engine.in_flight(),
                "requests did not hand over their traces in time"
            );
        }
        self.background.cancel();
        // Every request has handed over its trace: flush them.
        self.reporter.cancel();
        let _ = self.reporter_task.await;
        tracing::info!("shut down");
    }
}
