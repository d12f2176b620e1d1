//! The engine's end of a request's channel to the edge. It is gone when the
//! client left (the edge dropped its receiver) or when the node's shutdown
//! grace ran out, and every wait in the engine ends on either, so an
//! abandoned request is traced the same way whichever happened.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::EngineEvent;

pub struct ClientLink {
    tx: mpsc::Sender<EngineEvent>,
    cut: CancellationToken,
}

impl ClientLink {
    pub fn new(tx: mpsc::Sender<EngineEvent>, cut: CancellationToken) -> Self {
        Self { tx, cut }
    }

    /// Sends an event; an error means the client is gone.
    pub async fn send(&self, event: EngineEvent) -> Result<(), Gone> {
        if self.cut.is_cancelled() {
            return Err(Gone);
        }
        // Biased, send first: with room in the channel (the usual case) the
        // token's waiter list is never touched, once per streamed event.
        tokio::select! {
            biased;
            sent = self.tx.send(event) => sent.map_err(|_| Gone),
            () = self.cut.cancelled() => Err(Gone),
        }
    }

    /// Resolves once the client left or the shutdown grace ran out.
    pub async fn closed(&self) {
        tokio::select! {
            () = self.tx.closed() => {}
            () = self.cut.cancelled() => {}
        }
    }

    /// Whether the node cut this request short at the end of its shutdown grace.
    pub fn cut_by_shutdown(&self) -> bool {
        self.cut.is_cancelled()
    }

    /// Tells a client still there that its request was cut, without waiting
    /// on a full channel.
    pub fn try_tell(&self, event: EngineEvent) {
        let _ = self.tx.try_send(event);
    }
}

#[derive(Debug)]
pub struct Gone;
