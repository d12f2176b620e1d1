//! The control-plane replicas this node talks to. Any replica serves snapshot
//! streams and takes traces, so a stream that fails moves on to the next
//! address. Each stream starts at a random one so a fleet spreads its load.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use switchyard_tls::ClientTls;
use tonic::transport::{Channel, Endpoint};

use crate::DataPlaneError;

pub struct Replica {
    pub url: String,
    /// Connects lazily and reconnects on its own; cheap to clone.
    pub channel: Channel,
}

/// One lazily connected channel per configured address, built once at start.
#[derive(Clone)]
pub struct ControlPlanes {
    /// Never empty.
    replicas: Arc<[Replica]>,
}

impl ControlPlanes {
    /// `tls` applies to https:// URLs: the CA to trust (the system's roots
    /// without one) and this node's client certificate for mTLS.
    pub fn connect_lazy(urls: &[String], tls: &ClientTls) -> Result<Self, DataPlaneError> {
        let replicas = urls
            .iter()
            .map(|url| {
                let mut endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|_| DataPlaneError::ControlPlaneUrl(url.clone()))?;
                if url.starts_with("https://") {
                    endpoint = endpoint
                        .tls_config(tls.grpc())
                        .map_err(DataPlaneError::Tls)?;
                }
                let channel = endpoint
                    .connect_timeout(Duration::from_secs(3))
                    .tcp_nodelay(true)
                    // A replica that stops answering (frozen, partitioned) while
                    // its TCP connection stays open is left within seconds for
                    // the next one; HTTP/2 pings are cheap.
                    .http2_keep_alive_interval(Duration::from_secs(2))
                    .keep_alive_timeout(Duration::from_secs(3))
                    .keep_alive_while_idle(true)
                    .connect_lazy();
                Ok(Replica {
                    url: url.clone(),
                    channel,
                })
            })
            .collect::<Result<Arc<[Replica]>, DataPlaneError>>()?;
        if replicas.is_empty() {
            return Err(DataPlaneError::ControlPlaneUrl(String::new()));
        }
        Ok(Self { replicas })
    }

    /// A cursor over the replicas for one stream, starting at a random one.
    pub fn rotation(&self) -> Rotation {
        Rotation {
            replicas: self.replicas.clone(),
            next: rand::rng().random_range(0..self.replicas.len()),
        }
    }

    pub fn urls(&self) -> String {
        let urls: Vec<&str> = self.replicas.iter().map(|r| r.url.as_str()).collect();
        urls.join(",")
    }
}

pub struct Rotation {
    replicas: Arc<[Replica]>,
    next: usize,
}

impl Rotation {
    /// The replica to connect to now; the following call gives the one after it.
    pub fn next_replica(&mut self) -> &Replica {
        let index = self.next % self.replicas.len();
        self.next = index + 1;
        &self.replicas[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_rotation_visits_every_replica_in_turn() {
        let urls: Vec<String> = (0..3).map(|i| format!("http://cp-{i}:50051")).collect();
        let planes = ControlPlanes::connect_lazy(&urls, &ClientTls::default()).unwrap();
        let mut rotation = planes.rotation();
        let first = rotation.next_replica().url.clone();
        let start = urls.iter().position(|u| *u == first).unwrap();
        let mut seen = vec![first];
        for _ in 0..3 {
            seen.push(rotation.next_replica().url.clone());
        }
        let expected: Vec<String> = (0..4).map(|i| urls[(start + i) % 3].clone()).collect();
        assert_eq!(seen, expected);
        assert!(ControlPlanes::connect_lazy(&[], &ClientTls::default()).is_err());
    }
}
