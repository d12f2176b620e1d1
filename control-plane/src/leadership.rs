//! This replica's role, as the election decided it. Leader-only work (the
//! snapshot publisher, health aggregation, retention) asks it for the epoch to
//! act under; everything else (snapshot streams, trace ingest, queries) runs on
//! every replica whatever the role.

use tokio::sync::{Notify, watch};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Leads at this epoch (its election revision; the fencing token).
    Leader { epoch: u64 },
    /// Follows; relays the leader's snapshots.
    Follower,
}

pub struct Leadership {
    role: watch::Sender<Role>,
    /// Wakes the election when a write found this replica deposed.
    deposed: Notify,
}

impl Leadership {
    /// A replica that waits for the election to make it leader.
    pub fn follower() -> Self {
        Self {
            role: watch::Sender::new(Role::Follower),
            deposed: Notify::new(),
        }
    }

    /// The only replica, without an election.
    pub fn standalone(epoch: u64) -> Self {
        let leadership = Self::follower();
        leadership.role.send_replace(Role::Leader { epoch });
        leadership
    }

    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// The epoch to act under, while this replica leads.
    pub fn leading_epoch(&self) -> Option<u64> {
        match *self.role.borrow() {
            Role::Leader { epoch } => Some(epoch),
            Role::Follower => None,
        }
    }

    pub(crate) fn set(&self, role: Role) {
        self.role.send_if_modified(|current| {
            let changed = *current != role;
            *current = role;
            changed
        });
    }

    /// A leader-only write found a newer epoch in the store: stop acting as
    /// leader at once and let the election loop give up the term.
    pub fn deposed(&self, epoch: u64) {
        let was_leading = self.role.send_if_modified(|current| {
            if *current == (Role::Leader { epoch }) {
                *current = Role::Follower;
                true
            } else {
                false
            }
        });
        if was_leading {
            tracing::error!(
                epoch,
                "a newer leader holds the fence: this replica no longer leads"
            );
            self.deposed.notify_one();
        }
    }

    pub(crate) async fn wait_deposed(&self) {
        self.deposed.notified().await;
    }
}
