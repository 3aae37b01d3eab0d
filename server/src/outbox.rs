//! What goes out to one client: the bounded queue of its frames, the request to close it,
//! and the framing of watch notifications (which the apply thread queues directly).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use coord_proto::{EventType, KeeperState, WatcherEvent};
use tokio::sync::{mpsc, Notify};
use tracing::warn;

use crate::ids::ConnId;

/// The queue of frames going out to one client, bounded in bytes. Above `OUTBOX_PAUSE_BYTES` the
/// connection stops taking requests until its client reads (as ZooKeeper throttles); above the
/// hard bound, or when it makes no progress for `OUTBOX_STALL`, the client is disconnected
/// instead of growing the server's memory.
#[derive(Clone)]
pub struct Outbox {
    /// Unbounded in frames on purpose: it is bounded in bytes instead, by `queued_bytes_max`,
    /// which [`Outbox::send`] checks before every frame (each frame is itself bounded by the
    /// reply bound).
    tx: mpsc::UnboundedSender<Bytes>,
    /// Shared with the connection's writer, which takes off what it wrote.
    pub(crate) queued_bytes: Arc<AtomicUsize>,
    queued_bytes_max: usize,
    closing: Arc<Closing>,
    /// Set when a frame was dropped; from then on nothing more is queued.
    dropped: Arc<AtomicBool>,
    /// Signalled by the writer each time it has written a batch.
    pub(crate) drained: Arc<Notify>,
}

/// Queued reply bytes above which a connection stops reading requests.
pub const OUTBOX_PAUSE_BYTES: usize = 4 << 20;

/// A request, from anywhere on the server, to end a connection.
#[derive(Default)]
pub struct Closing {
    /// The connection's id (0 in tests): how the leader tells this member's connections apart.
    pub id: ConnId,
    requested: AtomicBool,
    pub(crate) notify: Notify,
}

impl Closing {
    pub(crate) fn new(id: ConnId) -> Closing {
        Closing {
            id,
            ..Closing::default()
        }
    }

    pub fn request(&self) {
        self.requested.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }
}

impl Outbox {
    /// Queues `frame`; past the hard bound the connection is closed and the frame dropped. A frame
    /// into an empty queue always goes out (every frame is bounded by the reply bound).
    ///
    /// Once one frame was dropped no later frame is queued: the client would otherwise read a
    /// reply that reflects a change whose watch event it never got, and could not tell.
    pub fn send(&self, frame: Bytes) {
        if self.dropped.load(Ordering::Acquire) {
            return;
        }
        let before = self.queued_bytes.fetch_add(frame.len(), Ordering::AcqRel);
        let queued = before + frame.len();
        if before > 0 && queued > self.queued_bytes_max {
            self.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
            if !self.dropped.swap(true, Ordering::AcqRel) {
                warn!(
                    queued,
                    "client is not reading its replies; closing the connection"
                );
            }
            self.closing.request();
            return;
        }
        // A send error means the writer is gone: the connection is already closing.
        let _ = self.tx.send(frame);
    }

    /// Whether a frame was dropped: the connection sends nothing more.
    pub fn has_dropped(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }

    pub(crate) fn queued(&self) -> usize {
        self.queued_bytes.load(Ordering::Acquire)
    }

    pub(crate) fn new(
        tx: mpsc::UnboundedSender<Bytes>,
        queued_bytes_max: usize,
        closing: Arc<Closing>,
    ) -> Outbox {
        Outbox {
            tx,
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            queued_bytes_max,
            closing,
            dropped: Arc::new(AtomicBool::new(false)),
            drained: Arc::new(Notify::new()),
        }
    }

    #[cfg(test)]
    pub fn for_test() -> (Outbox, mpsc::UnboundedReceiver<Bytes>) {
        Self::for_test_bounded(usize::MAX)
    }

    #[cfg(test)]
    pub fn for_test_bounded(max: usize) -> (Outbox, mpsc::UnboundedReceiver<Bytes>) {
        // Bounded in bytes by `max`, as every outbox is.
        let (tx, rx) = mpsc::unbounded_channel();
        (Outbox::new(tx, max, Arc::new(Closing::default())), rx)
    }
}

/// Frames a watch notification.
pub fn notification(event_type: EventType, path: &str, zxid: i64) -> Bytes {
    let mut buf = BytesMut::with_capacity(32 + path.len());
    WatcherEvent {
        event_type,
        state: KeeperState::SyncConnected,
        path: path.to_owned(),
    }
    .write_notification(&mut buf, zxid);
    buf.freeze()
}
