//! Leader election through etcd. Each term: grant a lease and keep it alive
//! with our own loop, register this replica under it, campaign, verify the
//! win, raise the Postgres fence to the election revision (the epoch), then
//! lead until the lease is about to be lost, the fence shows a newer leader,
//! or the replica shuts down; then step down first and resign, so a
//! successor takes over at once.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions, LeaderKey, LeaseClient, PutOptions, ResignOptions};
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::leadership::{Leadership, Role};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// How long one etcd request (not a campaign) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Back-off between failed terms.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ElectionConfig {
    pub endpoints: Vec<String>,
    /// Key prefix of the election and the replica registry.
    pub prefix: String,
    /// Lease time-to-live: a dead leader is replaced after about this long.
    pub lease_ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd did not answer {0} in time")]
    Timeout(&'static str),
    #[error("the lease was lost")]
    LeaseLost,
    #[error("won the campaign but etcd names another leader")]
    NotConfirmed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

async fn within<T>(
    what: &'static str,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, ElectionError> {
    timeout(REQUEST_TIMEOUT, call)
        .await
        .map_err(|_| ElectionError::Timeout(what))?
        .map_err(ElectionError::from)
}

/// Who leads and which replicas are registered, as etcd sees it now.
#[derive(Debug, Clone, Default)]
pub struct Members {
    /// The leader's node id and epoch, when one leads.
    pub leader: Option<(String, u64)>,
    pub replicas: Vec<String>,
}

/// Read access to the election, for cluster status.
#[derive(Clone)]
pub struct ElectionView {
    client: Client,
    prefix: String,
}

impl ElectionView {
    pub async fn members(&self) -> Result<Members, ElectionError> {
        let mut election = self.client.election_client();
        let leader = match within("leader", election.leader(leader_name(&self.prefix))).await {
            Ok(response) => response.kv().and_then(|kv| {
                let node = kv.value_str().ok()?.to_owned();
                Some((node, u64::try_from(kv.create_revision()).ok()?))
            }),
            // etcd answers an election without a leader with an error.
            Err(ElectionError::Etcd(etcd_client::Error::GRpcStatus(status)))
                if status.message().contains("no leader") =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        let mut kv = self.client.kv_client();
        let prefix = replicas_prefix(&self.prefix);
        let found = within(
            "replicas",
            kv.get(prefix.clone(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let mut replicas: Vec<String> = found
            .kvs()
            .iter()
            .filter_map(|kv| kv.value_str().ok().map(str::to_owned))
            .collect();
        replicas.sort();
        Ok(Members { leader, replicas })
    }
}

fn leader_name(prefix: &str) -> String {
    format!("{prefix}/leader")
}

fn replicas_prefix(prefix: &str) -> String {
    format!("{prefix}/replicas/")
}

pub struct Election {
    client: Client,
    config: ElectionConfig,
    node_id: String,
    store: Store,
    leadership: Arc<Leadership>,
    metrics: Arc<Metrics>,
}

impl Election {
    /// Prepares the client; connections are made on first use, so a control
    /// plane starts (as a follower) while etcd is away.
    pub async fn new(
        config: ElectionConfig,
        node_id: String,
        store: Store,
        leadership: Arc<Leadership>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ElectionError> {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), REQUEST_TIMEOUT);
        let client = Client::connect(&config.endpoints, Some(options)).await?;
        Ok(Self {
            client,
            config,
            node_id,
            store,
            leadership,
            metrics,
        })
    }

    pub fn view(&self) -> ElectionView {
        ElectionView {
            client: self.client.clone(),
            prefix: self.config.prefix.clone(),
        }
    }

    /// Campaigns term after term until shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut retry = RETRY_MIN;
        while !shutdown.is_cancelled() {
            let began = Instant::now();
            match self.term(&shutdown).await {
                Ok(()) => {}
                Err(e) => {
                    self.metrics.election_event("term_failed");
                    tracing::warn!(error = %e, retry_in = ?retry, "election term ended");
                }
            }
            if began.elapsed() > RETRY_MAX {
                retry = RETRY_MIN;
            }
            let jittered = retry.mul_f64(0.5 + rand::random::<f64>() * 0.5);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = sleep(jittered) => {}
            }
            retry = (retry * 2).min(RETRY_MAX);
        }
    }

    async fn term(&self, shutdown: &CancellationToken) -> Result<(), ElectionError> {
        let mut leases = self.client.lease_client();
        let asked = Instant::now();
        let ttl_secs = i64::try_from(self.config.lease_ttl.as_secs()).unwrap_or(i64::MAX);
        let granted = within("lease grant", leases.grant(ttl_secs, None)).await?;
        let lease = granted.id();
        let ttl = Duration::from_secs(u64::try_from(granted.ttl()).unwrap_or(0));
        let lost = CancellationToken::new();
        let keeper = tokio::spawn(keep_alive(leases.clone(), lease, ttl, asked, lost.clone()));
        let _stop_keeper = AbortOnDrop(keeper);

        let result = self.campaign_and_lead(lease, &lost, shutdown).await;
        self.leadership.set(Role::Follower);
        // Revoking deletes this replica's keys: a successor need not wait for the TTL.
        if let Err(e) = within("lease revoke", leases.revoke(lease)).await {
            tracing::debug!(error = %e, "could not revoke the lease; it expires by itself");
        }
        result
    }

    async fn campaign_and_lead(
        &self,
        lease: i64,
        lost: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Result<(), ElectionError> {
        let mut kv = self.client.kv_client();
        let registration = format!("{}{}", replicas_prefix(&self.config.prefix), self.node_id);
        within(
            "replica registration",
            kv.put(
                registration,
                self.node_id.clone(),
                Some(PutOptions::new().with_lease(lease)),
            ),
        )
        .await?;

        let name = leader_name(&self.config.prefix);
        let mut election = self.client.election_client();
        let won = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = lost.cancelled() => return Err(ElectionError::LeaseLost),
            won = election.campaign(name.clone(), self.node_id.clone(), lease) => won?,
        };
        let key = won.leader().cloned().ok_or(ElectionError::NotConfirmed)?;
        self.confirm(&name, &key).await?;
        let epoch = u64::try_from(key.rev()).unwrap_or_default();
        self.claim(epoch, lost, shutdown).await?;
        if shutdown.is_cancelled() {
            return self.resign(key).await;
        }

        self.leadership.set(Role::Leader { epoch });
        self.metrics.election_event("won");
        tracing::info!(epoch, node = %self.node_id, "leading");
        let (why, event) = tokio::select! {
            () = shutdown.cancelled() => ("shutting down", "stepped_down_shutdown"),
            () = lost.cancelled() => ("the lease could not be renewed in time", "stepped_down_lease_lost"),
            () = self.leadership.wait_deposed() => ("a newer leader holds the fence", "stepped_down_deposed"),
        };
        // Stop acting as leader before anything else.
        self.leadership.set(Role::Follower);
        self.metrics.election_event(event);
        tracing::warn!(epoch, reason = why, "stepped down");
        self.resign(key).await
    }

    /// Checks that etcd names this replica's key as the leader.
    async fn confirm(&self, name: &str, key: &LeaderKey) -> Result<(), ElectionError> {
        let mut election = self.client.election_client();
        let leader = within("leader", election.leader(name.to_owned())).await?;
        let confirmed = leader
            .kv()
            .is_some_and(|kv| kv.key() == key.key() && kv.create_revision() == key.rev());
        if confirmed {
            Ok(())
        } else {
            Err(ElectionError::NotConfirmed)
        }
    }

    /// Raises the fence to `epoch`, retrying while the database is away and
    /// the lease holds.
    async fn claim(
        &self,
        epoch: u64,
        lost: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Result<(), ElectionError> {
        loop {
            match self.store.claim_epoch(epoch, &self.node_id).await {
                Ok(()) => return Ok(()),
                Err(e @ StoreError::Fenced { .. }) => {
                    tracing::error!(error = %e, "won the election below the stored fence; was etcd's data reset?");
                    return Err(e.into());
                }
                Err(e) => tracing::warn!(error = %e, "cannot raise the fence yet; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = lost.cancelled() => return Err(ElectionError::LeaseLost),
                () = sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    async fn resign(&self, key: LeaderKey) -> Result<(), ElectionError> {
        let mut election = self.client.election_client();
        within(
            "resign",
            election.resign(Some(ResignOptions::new().with_leader(key))),
        )
        .await?;
        Ok(())
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the lease every third of its TTL. Cancels `lost` a third of the
/// TTL before the lease could expire in etcd (counted from when the last
/// successful renewal was sent), so a leader cut off from etcd steps down
/// while its lease still stands and no successor can have won yet.
async fn keep_alive(
    mut leases: LeaseClient,
    lease: i64,
    ttl: Duration,
    granted_asked_at: Instant,
    lost: CancellationToken,
) {
    let every = ttl / 3;
    let mut expires = granted_asked_at + ttl;
    let mut stream = None;
    loop {
        let step_down_at = expires - every;
        if Instant::now() >= step_down_at {
            tracing::warn!(
                lease,
                "no lease renewal answered in time: stepping down before the lease can expire"
            );
            lost.cancel();
            return;
        }
        let sent = Instant::now();
        match timeout_at(step_down_at, renew(&mut leases, lease, &mut stream)).await {
            Ok(Ok(left)) if left > 0 => {
                expires = sent + Duration::from_secs(u64::try_from(left).unwrap_or(0));
                tokio::select! {
                    () = lost.cancelled() => return,
                    () = sleep(every) => {}
                }
            }
            Ok(Ok(_)) => {
                tracing::warn!(lease, "the lease expired in etcd");
                lost.cancel();
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "lease renewal failed; retrying");
                stream = None;
                sleep(every / 4).await;
            }
            Err(_) => {}
        }
    }
}

type KeepAlive = (etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream);

/// One renewal on the keep-alive stream (opened when needed); returns the
/// lease's remaining TTL in seconds, 0 when it is gone.
async fn renew(
    leases: &mut LeaseClient,
    lease: i64,
    stream: &mut Option<KeepAlive>,
) -> Result<i64, etcd_client::Error> {
    let (keeper, responses) = match stream {
        Some(open) => open,
        None => stream.insert(leases.keep_alive(lease).await?),
    };
    keeper.keep_alive().await?;
    match responses.message().await? {
        Some(response) => Ok(response.ttl()),
        None => Err(etcd_client::Error::LeaseKeepAliveError(
            "keep-alive stream closed".into(),
        )),
    }
}
