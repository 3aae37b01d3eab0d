//! What every transport does the same way: per-(peer, stream) send queues bounded and reset
//! rather than grown, the backoff between dials, and dropping a broken stream's queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::sync::{mpsc, Notify};

use crate::{Event, PeerId, SendError, Stream};

/// One (peer, stream)'s send queue, and the way to ask its writer for a reset.
pub(crate) struct Outbound {
    pub tx: mpsc::Sender<Bytes>,
    /// Asks the writer to drop its connection (or stream) and queue.
    pub reset: Arc<Notify>,
}

/// Every (peer, stream)'s send queue.
pub(crate) type Outbounds = BTreeMap<(PeerId, Stream), Outbound>;

/// Frames queued for `to` on `stream` and not yet written.
pub(crate) fn queued(outbound: &Outbounds, to: PeerId, stream: Stream) -> usize {
    outbound
        .get(&(to, stream))
        .map_or(0, |out| out.tx.max_capacity() - out.tx.capacity())
}

/// Queues `frame` for `to` on `stream`, without waiting.
pub(crate) fn send(
    outbound: &Outbounds,
    frame_bytes_max: usize,
    to: PeerId,
    stream: Stream,
    frame: Bytes,
) -> Result<(), SendError> {
    if frame.len() > frame_bytes_max {
        return Err(SendError::FrameTooLarge {
            len: frame.len(),
            max: frame_bytes_max,
        });
    }
    let out = outbound
        .get(&(to, stream))
        .ok_or(SendError::UnknownPeer(to))?;
    match out.tx.try_send(frame) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => {
            // Growing would let one slow peer take the memory; dropping one frame silently
            // would leave a gap. The stream starts over instead, and both ends hear of it.
            out.reset.notify_one();
            Err(SendError::QueueFull(to))
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
    }
}

/// Asks the writer for (`peer`, `stream`) to drop its stream and what is queued.
pub(crate) fn reset(outbound: &Outbounds, peer: PeerId, stream: Stream) {
    if let Some(out) = outbound.get(&(peer, stream)) {
        out.reset.notify_one();
    }
}

/// The wait before dial `attempt`: doubling from `min` up to `max`, plus up to half again so
/// that members restarted together do not dial in lockstep.
pub(crate) fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let base = min.saturating_mul(1u32 << attempt.min(16)).min(max);
    let jitter = rand::thread_rng().gen_range(0.0..0.5);
    base.mul_f64(1.0 + jitter)
}

/// What was queued belongs to the broken stream: dropped, then the engine is told. False once
/// the transport is gone.
pub(crate) async fn drop_queue_and_report(
    rx: &mut mpsc::Receiver<Bytes>,
    events: &mpsc::Sender<Event>,
    peer: PeerId,
    stream: Stream,
) -> bool {
    while rx.try_recv().is_ok() {}
    events.send(Event::Reset { peer, stream }).await.is_ok()
}
