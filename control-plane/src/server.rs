//! Wires the store, the publisher and the gRPC services into a running server.

use std::net::SocketAddr;
use std::sync::Arc;

use switchyard_proto::v1::cluster_service_server::ClusterServiceServer;
use switchyard_proto::v1::health_service_server::HealthServiceServer;
use switchyard_proto::v1::registry_service_server::RegistryServiceServer;
use switchyard_proto::v1::snapshot_service_server::SnapshotServiceServer;
use switchyard_proto::v1::trace_service_server::TraceServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::aggregation::{AggregationLoop, HealthBoard};
use crate::api::{
    cluster::ClusterApi, health::HealthApi, registry::RegistryApi, snapshot::SnapshotApi,
    traces::TraceApi,
};
use crate::config::ControlPlaneConfig;
use crate::fleet::Fleet;
use crate::snapshots::SnapshotPublisher;
use crate::store::Store;
use crate::{ControlPlaneError, bootstrap};

/// Without etcd the single control plane leads at epoch 0.
const STANDALONE_EPOCH: u64 = 0;

/// A started control plane. Cancel the token passed to [`start`] to stop it,
/// then await [`RunningControlPlane::wait`].
pub struct RunningControlPlane {
    pub local_addr: SocketAddr,
    pub snapshot_version: u64,
    tasks: TaskTracker,
    store: Store,
}

impl RunningControlPlane {
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
    let store = Store::connect(&config.database_url).await?;
    bootstrap::apply(&store, config.bootstrap.as_ref()).await?;

    let publisher = Arc::new(SnapshotPublisher::new(
        store.clone(),
        STANDALONE_EPOCH,
        config.default_strategy.clone(),
        config.mass_removal_hold,
    ));
    let snapshot_version = publisher.refresh().await?;
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
    let (reflection_v1, reflection_v1alpha) = switchyard_proto::reflection_services(&[
        "switchyard.v1.RegistryService",
        "switchyard.v1.SnapshotService",
        "switchyard.v1.TraceService",
        "switchyard.v1.ClusterService",
        "switchyard.v1.HealthService",
    ])?;

    let router = tonic::transport::Server::builder()
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
        .add_service(TraceServiceServer::new(TraceApi::new(store.clone())))
        .add_service(ClusterServiceServer::new(ClusterApi::new(
            config.node_id.clone(),
            STANDALONE_EPOCH,
            publisher.clone(),
            fleet.clone(),
        )))
        .add_service(HealthServiceServer::new(HealthApi::new(board.clone())));

    let tasks = TaskTracker::new();
    tasks.spawn(
        publisher
            .clone()
            .poll(config.registry_poll, shutdown.clone()),
    );
    tasks.spawn(publisher.clone().debounce(shutdown.clone()));
    tasks.spawn(
        AggregationLoop {
            store: store.clone(),
            publisher,
            fleet,
            board,
            config: config.aggregation,
        }
        .run(shutdown.clone()),
    );
    let server_shutdown = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                server_shutdown.cancelled(),
            )
            .await
        {
            tracing::error!(error = %e, "control-plane gRPC server failed");
        }
    });
    tasks.close();
    tracing::info!(addr = %local_addr, node = %config.node_id, snapshot_version, "control plane listening");
    Ok(RunningControlPlane {
        local_addr,
        snapshot_version,
        tasks,
        store,
    })
}
