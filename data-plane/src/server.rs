//! Wires the subscriber, the engine, the reporter and both edges into a running
//! data plane.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::serve::ListenerExt;
use switchyard_proto::v1::inference_service_server::InferenceServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::breaker::Breakers;
use crate::budget::Budgets;
use crate::config::DataPlaneConfig;
use crate::control_plane::ControlPlanes;
use crate::edge::{AppState, grpc::InferenceApi, http, tls_listener::TlsListener};
use crate::engine::{Engine, EngineConfig};
use crate::health::LocalSignals;
use crate::health::prober::Prober;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::reporter::SpoolLimits;
use crate::shutdown::Drain;
use crate::state_dir::StateDir;
use crate::subscriber::Subscriber;
use crate::{DataPlaneError, reporter};

pub struct RunningDataPlane {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    snapshot: crate::snapshot::SnapshotCell,
    tasks: TaskTracker,
    /// Holds the state directory's lock until the data plane is gone.
    _state: Arc<StateDir>,
}

impl RunningDataPlane {
    /// Version of the snapshot being served; None until the first one arrives
    /// or is loaded from the state directory.
    pub fn snapshot_version(&self) -> Option<u64> {
        self.snapshot.load().as_ref().map(|s| s.version())
    }

    /// Reads provider secrets again (SIGHUP): the one configuration a data
    /// plane holds that may change under it, in mounted Secret files.
    pub fn reload_credentials(&self) {
        match crate::snapshot::reresolve_credentials(&self.snapshot) {
            Some((before, after)) => tracing::info!(
                callable_before = before,
                callable_after = after,
                "provider credentials read again"
            ),
            None => tracing::info!(
                "provider credentials not read again: no snapshot yet, or a newer one just resolved them"
            ),
        }
    }

    /// Waits until the servers have drained and the trace reporter has flushed.
    pub async fn wait(self) {
        self.tasks.wait().await;
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), DataPlaneError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| DataPlaneError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| DataPlaneError::Bind { addr, source })?;
    Ok((listener, local))
}

pub async fn start(
    config: DataPlaneConfig,
    shutdown: CancellationToken,
) -> Result<RunningDataPlane, DataPlaneError> {
    // reqwest is built without a default crypto provider; install ring once.
    switchyard_tls::install_provider();
    // Redirects are not followed: a provider URL that redirects is a
    // misconfiguration, and following it would carry the key elsewhere.
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .build()
        .map_err(DataPlaneError::HttpClient)?;

    let control_planes =
        ControlPlanes::connect_lazy(&config.control_planes, &config.control_plane_tls)?;
    let state_dir = Arc::new(StateDir::open(&config.state_dir)?);

    // Build the tokenizer off the async threads now, not on the first request.
    tokio::task::spawn_blocking(crate::workload::warm_up);
    let limiter = Arc::new(Limiter::new(config.limiter.clone())?);
    let budgets = Arc::new(Budgets::new(
        config.limiter.redis_url.as_ref(),
        config.limiter.redis_timeout,
        &config.limiter.key_prefix,
    ));
    let mut metrics = Metrics::new();
    limiter.metrics().register(&mut metrics.registry);
    budgets.register(&mut metrics.registry);
    let metrics = Arc::new(metrics);
    let snapshot = Arc::new(ArcSwapOption::empty());
    let (trace_reporter, probe_results, report_loop) = reporter::reporter(
        control_planes.rotation(),
        metrics.clone(),
        state_dir.clone(),
        SpoolLimits {
            memory: config.trace_spool_memory,
            total: config.trace_spool,
        },
        config.node_id.clone(),
        config.health_window,
    );
    let breakers = Arc::new(Breakers::default());
    let subscriber = Subscriber::new(
        control_planes.rotation(),
        snapshot.clone(),
        config.node_id.clone(),
        config.region.clone(),
        metrics.clone(),
        breakers.clone(),
        state_dir.clone(),
    );
    // Before the servers take traffic: with every control plane down, a
    // restarted node still routes (and turns ready) on its last good snapshot.
    subscriber.restore().await;
    let signals = Arc::new(LocalSignals::default());
    let engine = Arc::new(Engine::new(
        client.clone(),
        trace_reporter,
        metrics.clone(),
        breakers.clone(),
        signals.clone(),
        EngineConfig {
            max_attempts: config.max_attempts,
            retries_per_target: config.retries_per_target,
            first_token_timeout: config.first_token_timeout,
            node_id: config.node_id.clone(),
        },
    ));
    let state = AppState {
        snapshot: snapshot.clone(),
        engine,
        metrics: metrics.clone(),
        max_body_bytes: config.max_body_bytes,
        fallback_chain: config.fallback_chain,
        breakers: breakers.clone(),
        signals,
        limiter,
        budgets,
        draining: Arc::new(AtomicBool::new(false)),
    };

    let (http_listener, http_addr) = bind(config.http_listen).await?;
    let (grpc_listener, grpc_addr) = bind(config.grpc_listen).await?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<InferenceServiceServer<InferenceApi>>()
        .await;
    let (reflection_v1, reflection_v1alpha) =
        switchyard_proto::reflection_services(&["switchyard.v1.InferenceService"])?;
    let mut grpc = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        grpc = grpc.tls_config(tls.grpc()).map_err(DataPlaneError::Tls)?;
    }
    let https = match &config.tls {
        Some(tls) => Some(tls.http().map_err(DataPlaneError::TlsFiles)?),
        None => None,
    };
    let grpc = grpc
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InferenceServiceServer::new(InferenceApi::new(
            state.clone(),
        )));

    let tasks = TaskTracker::new();
    // Stopping goes in steps (see `shutdown`), each with its own token.
    let stop_accepting = CancellationToken::new();
    let background = CancellationToken::new();
    let reporter_shutdown = CancellationToken::new();
    let reporter_task = tasks.spawn(report_loop.run(reporter_shutdown.clone()));
    tasks.spawn(
        Prober {
            cell: snapshot.clone(),
            client,
            samples: probe_results,
            breakers: breakers.clone(),
        }
        .run(background.clone()),
    );
    tasks.spawn(subscriber.run(background.clone()));
    let grpc_shutdown = stop_accepting.clone();
    let grpc_task = tasks.spawn(async move {
        if let Err(e) = grpc
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(grpc_listener),
                grpc_shutdown.cancelled(),
            )
            .await
        {
            tracing::error!(error = %e, "data-plane gRPC server failed");
        }
    });
    let http_shutdown = stop_accepting.clone();
    let (draining, engine) = (state.draining.clone(), state.engine.clone());
    let tls = https.is_some();
    let http_task = tasks.spawn(async move {
        let app = http::router(state, https.is_some());
        let served = match https {
            Some(acceptor) => match TlsListener::new(http_listener, acceptor) {
                Ok(listener) => {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
                        .await
                }
                Err(e) => Err(e),
            },
            None => {
                // Stream events are small writes; without no-delay each one
                // waits for the client's delayed ACK (about 40 ms on Linux).
                let listener = http_listener.tap_io(|tcp| {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::warn!(error = %e, "cannot set TCP_NODELAY");
                    }
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
                    .await
            }
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "data-plane HTTP server failed");
        }
    });
    tasks.spawn(
        Drain {
            requested: shutdown,
            draining,
            health: health_reporter,
            drain_delay: config.drain_delay,
            grace: config.shutdown_grace,
            stop_accepting,
            servers: [http_task, grpc_task],
            engine,
            background,
            reporter: reporter_shutdown,
            reporter_task,
        }
        .run(),
    );
    tasks.close();
    tracing::info!(http = %http_addr, grpc = %grpc_addr, tls, node = %config.node_id, control_plane = %control_planes.urls(), state_dir = %state_dir.path().display(), "data plane listening");
    Ok(RunningDataPlane {
        http_addr,
        grpc_addr,
        snapshot,
        tasks,
        _state: state_dir,
    })
}
