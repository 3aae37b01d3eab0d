//! Newtypes for the ids the server hands around, so that one is never taken for another.

use std::fmt;

/// Identifies a client connection on this server (not a session: a session outlives sockets).
/// Ids start at 1 and are never reused while the server runs; 0 means none (tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A client session, as ZooKeeper numbers them: the top byte is the id of the member that
/// created it (0 standalone), so members never hand out the same one. 0 means none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub i64);

impl SessionId {
    pub const NONE: SessionId = SessionId(0);

    pub fn is_none(self) -> bool {
        self == SessionId::NONE
    }
}

/// In hex, as ZooKeeper logs and four-letter words show session ids.
impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}
