//! The contract between the engine and the state it replicates.

use std::io;

use crate::Zxid;

/// A deterministic state machine whose transactions the engine makes durable and replicates.
///
/// The engine treats a txn as opaque bytes: it orders them, logs them, and hands each committed
/// txn to [`StateMachine::apply`] exactly once, in zxid order, on every replica. Everything a txn
/// depends on (timestamps, generated names, the outcome of a conditional check) must already be
/// inside its bytes, so that every replica computes the same state.
pub trait StateMachine: Send + 'static {
    /// What applying a txn yields to the caller that proposed it (for the znode tree: the reply).
    type Output: Send + 'static;

    /// A frozen, self-contained view of the state that can be written out on another thread
    /// while the machine keeps applying txns.
    type Snapshot: Snapshot;

    /// Applies one committed txn. Must be deterministic: the same txn applied to the same state
    /// gives the same state and output on every replica.
    ///
    /// A txn that cannot be decoded was written by a buggy or different version of the machine;
    /// the implementation reports it in its output rather than panicking.
    fn apply(&mut self, zxid: Zxid, txn: &[u8]) -> Self::Output;

    /// Takes a frozen view of the state as of the last applied zxid. It runs on the apply
    /// thread, which applies nothing meanwhile: it should cost little whatever the size of the
    /// state (share it, as a persistent structure does; the znode tree takes one in O(1)), and
    /// leave the writing to [`Snapshot::write_to`], which runs on another thread.
    fn snapshot(&self) -> Self::Snapshot;

    /// Replaces the whole state with one read back from [`Snapshot::write_to`]'s output.
    fn restore(&mut self, reader: &mut dyn io::Read) -> Result<(), RestoreError>;
}

/// A frozen view of a [`StateMachine`]'s state.
pub trait Snapshot: Send + 'static {
    /// Writes the state in the machine's own format; [`StateMachine::restore`] reads it back.
    fn write_to(&self, writer: &mut dyn io::Write) -> io::Result<()>;
}

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    #[error("reading snapshot: {0}")]
    Io(#[from] io::Error),
    #[error("malformed snapshot: {0}")]
    Malformed(String),
}
