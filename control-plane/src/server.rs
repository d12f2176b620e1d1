//! Wires the store, the publisher and the gRPC services into a running server.

use std::net::SocketAddr;
use std::sync::Arc;

use switchyard_proto::v1::access_service_server::AccessServiceServer;
use switchyard_proto::v1::cluster_service_server::ClusterServiceServer;
use switchyard_proto::v1::health_service_server::HealthServiceServer;
use switchyard_proto::v1::registry_service_server::RegistryServiceServer;
use switchyard_proto::v1::snapshot_service_server::SnapshotServiceServer;
use switchyard_proto::v1::trace_service_server::TraceServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::AdminAuthLayer;
use crate::aggregation::{AggregationLoop, HealthBoard};
use crate::api::{
    access::AccessApi, cluster::ClusterApi, health::HealthApi, registry::RegistryApi,
    snapshot::SnapshotApi, traces::TraceApi,
};
use crate::config::ControlPlaneConfig;
use crate::election::Election;
use crate::fleet::Fleet;
use crate::leadership::{Leadership, Role};
use crate::metrics::{Metrics, Scrape};
use crate::replay::Replayer;
use crate::retention::TraceRetention;
use crate::snapshots::{SnapshotError, SnapshotPublisher};
use crate::store::Store;
use crate::{ControlPlaneError, bootstrap};

/// A started control plane. Cancel the token passed to [`start`] to stop it,
/// then await [`RunningControlPlane::wait`].
pub struct RunningControlPlane {
    pub local_addr: SocketAddr,
    /// Where `GET /metrics` is served, if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    pub snapshot_version: u64,
    tasks: TaskTracker,
    store: Store,
    publisher: Arc<SnapshotPublisher>,
}

impl RunningControlPlane {
    /// Applies a bootstrap file again without a restart (SIGHUP): entries
    /// are created or updated, never deleted, exactly as at start, and the
    /// change is published. A follower's writes reach the leader's next
    /// registry poll. Returns the snapshot version now served.
    pub async fn reapply_bootstrap(
        &self,
        config: &switchyard_domain::BootstrapConfig,
    ) -> Result<u64, ControlPlaneError> {
        bootstrap::apply(&self.store, Some(config)).await?;
        match self.publisher.refresh().await {
            Err(SnapshotError::NotLeader) => Ok(self.publisher.relay().await?),
            other => Ok(other?),
        }
    }

    /// Waits until the server and its background tasks have stopped.
    pub async fn wait(self) {
        self.tasks.wait().await;
        self.store.close().await;
    }
}

pub async fn start(
    config: ControlPlaneConfig,
    shutdown: CancellationToken,
) -> Result<RunningControlPlane, ControlPlaneError> {
    let store = Store::connect(&config.database_url)
        .await?
        .with_candidate_rows(config.trace_candidate_rows);
    bootstrap::apply(&store, config.bootstrap.as_ref()).await?;
    let metrics = Arc::new(Metrics::new());

    // With etcd this replica follows until it wins an election; without it,
    // it is the only replica and leads at the stored epoch.
    let (leadership, election) = match &config.election {
        Some(election) => {
            let leadership = Arc::new(Leadership::follower());
            let election = Election::new(
                election.clone(),
                config.node_id.clone(),
                store.clone(),
                leadership.clone(),
                metrics.clone(),
            )
            .await?;
            (leadership, Some(election))
        }
        None => {
            let epoch = store.adopt_epoch(&config.node_id).await?;
            (Arc::new(Leadership::standalone(epoch)), None)
        }
    };
    let publisher = Arc::new(SnapshotPublisher::new(
        store.clone(),
        leadership.clone(),
        config.default_strategy.clone(),
        config.trace_payload,
        config.mass_removal_hold,
        config.admin_token.replay_grant(),
    ));
    // A leader publishes at once; a follower starts from the leader's newest.
    let snapshot_version = match publisher.refresh().await {
        Err(SnapshotError::NotLeader) => publisher.relay().await?,
        other => other?,
    };
    let fleet = Arc::new(Fleet::default());
    let board = Arc::new(HealthBoard::default());

    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| ControlPlaneError::Bind {
                addr: config.listen,
                source,
            })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ControlPlaneError::Bind {
            addr: config.listen,
            source,
        })?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            crate::metrics::bind(addr)
                .await
                .map_err(|source| ControlPlaneError::Bind { addr, source })?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(|(_, addr)| *addr);

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<RegistryServiceServer<RegistryApi>>()
        .await;
    health_reporter
        .set_serving::<SnapshotServiceServer<SnapshotApi>>()
        .await;
    health_reporter
        .set_serving::<TraceServiceServer<TraceApi>>()
        .await;
    health_reporter
        .set_serving::<ClusterServiceServer<ClusterApi>>()
        .await;
    health_reporter
        .set_serving::<HealthServiceServer<HealthApi>>()
        .await;
    health_reporter
        .set_serving::<AccessServiceServer<AccessApi>>()
        .await;
    let (reflection_v1, reflection_v1alpha) = switchyard_proto::reflection_services(&[
        "switchyard.v1.RegistryService",
        "switchyard.v1.SnapshotService",
        "switchyard.v1.TraceService",
        "switchyard.v1.ClusterService",
        "switchyard.v1.HealthService",
        "switchyard.v1.AccessService",
    ])?;

    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        server = server.tls_config(tls.grpc())?;
    }
    let data_planes_need_certificates = config
        .tls
        .as_ref()
        .is_some_and(|tls| tls.client_ca.is_some());
    let router = server
        .trace_fn(grpc_span)
        .layer(AdminAuthLayer::new(
            config.admin_token.clone(),
            data_planes_need_certificates,
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(RegistryServiceServer::new(RegistryApi::new(
            store.clone(),
            publisher.clone(),
            config.default_strategy.clone(),
        )))
        .add_service(SnapshotServiceServer::new(SnapshotApi::new(
            config.node_id.clone(),
            publisher.clone(),
            fleet.clone(),
            shutdown.clone(),
        )))
        .add_service(TraceServiceServer::new(TraceApi::new(
            store.clone(),
            metrics.clone(),
            Arc::new(Replayer::new(
                store.clone(),
                config.replay_via.clone(),
                config.replay_ca.as_ref(),
                config.admin_token.replay_secret(),
            )?),
            shutdown.clone(),
        )))
        .add_service(ClusterServiceServer::new(ClusterApi::new(
            config.node_id.clone(),
            leadership.clone(),
            election.as_ref().map(Election::view),
            publisher.clone(),
            fleet.clone(),
        )))
        .add_service(HealthServiceServer::new(HealthApi::new(
            board.clone(),
            leadership.clone(),
        )))
        .add_service(AccessServiceServer::new(AccessApi::new(
            store.clone(),
            publisher.clone(),
        )));

    let tasks = TaskTracker::new();
    if let Some((listener, _)) = metrics_listener {
        let scrape = Scrape {
            metrics,
            leadership: leadership.clone(),
            publisher: publisher.clone(),
            fleet: fleet.clone(),
            board: board.clone(),
            store: store.clone(),
        };
        tasks.spawn(crate::metrics::serve(listener, scrape, shutdown.clone()));
    }
    tasks.spawn(
        publisher
            .clone()
            .poll(config.registry_poll, config.relay_poll, shutdown.clone()),
    );
    tasks.spawn(publisher.clone().debounce(shutdown.clone()));
    // Subscribed before the election starts, so no win goes unseen; a
    // standalone leader published above already.
    let mut role = leadership.subscribe();
    role.borrow_and_update();
    tasks.spawn(take_over_on_election(
        publisher.clone(),
        role,
        shutdown.clone(),
    ));
    let reload_publisher = publisher.clone();
    tasks.spawn(
        AggregationLoop {
            store: store.clone(),
            publisher,
            fleet,
            board,
            leadership: leadership.clone(),
            config: config.aggregation,
        }
        .run(shutdown.clone()),
    );
    if let Some(keep) = config.trace_retention {
        tasks.spawn(
            TraceRetention {
                store: store.clone(),
                leadership: leadership.clone(),
                keep,
            }
            .run(shutdown.clone()),
        );
    }
    if let Some(election) = election {
        // On shutdown it steps down and resigns, so a successor takes over at once.
        tasks.spawn(election.run(shutdown.clone()));
    }
    let server_shutdown = shutdown.clone();
    tasks.spawn(async move {
        // Health turns to not serving before the listener closes, so a
        // probe or a client looking at health moves on first.
        let stop = async move {
            server_shutdown.cancelled().await;
            health_reporter
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
        };
        if let Err(e) = router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop)
            .await
        {
            tracing::error!(error = %e, "control-plane gRPC server failed");
        }
    });
    tasks.close();
    tracing::info!(addr = %local_addr, metrics = ?metrics_addr, node = %config.node_id, snapshot_version, elected = config.election.is_some(), tls = config.tls.is_some(), mtls = data_planes_need_certificates, "control plane listening");
    Ok(RunningControlPlane {
        local_addr,
        metrics_addr,
        snapshot_version,
        tasks,
        store,
        publisher: reload_publisher,
    })
}

/// Publishes under the new epoch as soon as this replica wins an election,
/// so data planes hear from the new leader without waiting for a change.
async fn take_over_on_election(
    publisher: Arc<SnapshotPublisher>,
    mut role: tokio::sync::watch::Receiver<Role>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = role.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let Role::Leader { epoch } = role.borrow_and_update().clone() else {
            continue;
        };
        match publisher.take_over().await {
            Ok(version) => tracing::info!(epoch, version, "published as the new leader"),
            Err(e) => {
                tracing::warn!(error = %e, epoch, "first publication as leader failed; the registry poll retries")
            }
        }
    }
}

/// One server span per unary call, a child of the caller's `traceparent`.
/// Streams that live as long as a connection (snapshot sync, trace reports)
/// and health checks get none: a span of hours tells nobody anything.
fn grpc_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path().trim_start_matches('/');
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    if matches!(method, "Sync" | "Report") || service.starts_with("grpc.") {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "grpc",
        otel.name = path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
    );
    switchyard_telemetry::context::RemoteContext::from_headers(request.headers()).adopt(&span);
    span
}
