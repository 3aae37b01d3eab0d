//! What an operation can fail with.

use coord_proto::ErrorCode;

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with this ZooKeeper error (`NoNode`, `NodeExists`, `BadVersion`,
    /// ...): the operation did not happen.
    #[error("{0:?}")]
    Server(ErrorCode),
    /// The connection was lost: the operation may or may not have happened.
    #[error("connection lost")]
    ConnectionLoss,
    /// The session is gone (expired, or closed); this client can do nothing more.
    #[error("session expired")]
    SessionExpired,
    /// The session was closed (by [`crate::Client::close`]); this client can do nothing more.
    #[error("session closed")]
    Closed,
    /// A persistent watch's reader fell behind and this many events were dropped: read the
    /// state again; the events that follow are current.
    #[error("{0} watch events were dropped")]
    Lagged(u64),
    /// No server of the connection string could be reached.
    #[error("no server could be reached: {0}")]
    Unreachable(String),
    /// The connection string does not parse.
    #[error(transparent)]
    ConnectString(#[from] crate::ConnectStringError),
    /// The server sent something this client cannot read: it closed the connection.
    #[error("malformed reply: {0}")]
    Malformed(String),
}

impl Error {
    /// The ZooKeeper error code this error stands for, as the C and Java clients report it.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Server(code) => *code,
            Error::ConnectionLoss | Error::Unreachable(_) => ErrorCode::ConnectionLoss,
            Error::SessionExpired => ErrorCode::SessionExpired,
            // As ZooKeeper's C client reports a handle used after zookeeper_close.
            Error::Closed => ErrorCode::SessionExpired,
            Error::Lagged(_) => ErrorCode::SystemError,
            Error::ConnectString(_) => ErrorCode::BadArguments,
            Error::Malformed(_) => ErrorCode::MarshallingError,
        }
    }
}
