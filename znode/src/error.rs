//! The znode layer's error type and its mapping to ZooKeeper error codes.

use coord_proto::ErrorCode;

/// Why a znode operation failed. [`Error::code`] gives the code a ZooKeeper client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path breaks `PathUtils.validatePath`, or names a node that may not be deleted.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    /// A request argument is out of range (create flags, TTL).
    #[error("bad arguments: {0}")]
    BadArguments(String),
    #[error("no node {0}")]
    NoNode(String),
    #[error("node {0} exists")]
    NodeExists(String),
    #[error("node {0} has children")]
    NotEmpty(String),
    #[error("version mismatch on {path}: expected {expected}, found {actual}")]
    BadVersion {
        path: String,
        expected: i32,
        actual: i32,
    },
    #[error("not authorized for {0}")]
    NoAuth(String),
    #[error("invalid ACL for {0}")]
    InvalidAcl(String),
    #[error("ephemeral node {0} cannot have children")]
    NoChildrenForEphemerals(String),
    #[error("session 0x{0:x} expired or closing")]
    SessionExpired(i64),
    /// The reply to a read would exceed the server's reply bound.
    #[error("reply for {path} exceeds {max} bytes")]
    ReplyTooLarge { path: String, max: usize },
    /// Bytes that should be one of our records (a txn, a snapshot) are not.
    #[error("malformed: {0}")]
    Malformed(String),
}

impl Error {
    /// The `KeeperException.Code` ZooKeeper answers with for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidPath { .. } | Error::BadArguments(_) => ErrorCode::BadArguments,
            Error::NoNode(_) => ErrorCode::NoNode,
            Error::NodeExists(_) => ErrorCode::NodeExists,
            Error::NotEmpty(_) => ErrorCode::NotEmpty,
            Error::BadVersion { .. } => ErrorCode::BadVersion,
            Error::NoAuth(_) => ErrorCode::NoAuth,
            Error::InvalidAcl(_) => ErrorCode::InvalidAcl,
            Error::NoChildrenForEphemerals(_) => ErrorCode::NoChildrenForEphemerals,
            Error::SessionExpired(_) => ErrorCode::SessionExpired,
            Error::ReplyTooLarge { .. } | Error::Malformed(_) => ErrorCode::MarshallingError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_zookeeper_code() {
        let p = || "/p".to_string();
        let cases = [
            (
                Error::InvalidPath {
                    path: p(),
                    reason: "x",
                },
                ErrorCode::BadArguments,
            ),
            (Error::BadArguments(p()), ErrorCode::BadArguments),
            (Error::NoNode(p()), ErrorCode::NoNode),
            (Error::NodeExists(p()), ErrorCode::NodeExists),
            (Error::NotEmpty(p()), ErrorCode::NotEmpty),
            (
                Error::BadVersion {
                    path: p(),
                    expected: 1,
                    actual: 2,
                },
                ErrorCode::BadVersion,
            ),
            (Error::NoAuth(p()), ErrorCode::NoAuth),
            (Error::InvalidAcl(p()), ErrorCode::InvalidAcl),
            (
                Error::NoChildrenForEphemerals(p()),
                ErrorCode::NoChildrenForEphemerals,
            ),
            (Error::SessionExpired(7), ErrorCode::SessionExpired),
            (
                Error::ReplyTooLarge { path: p(), max: 1 },
                ErrorCode::MarshallingError,
            ),
            (Error::Malformed(p()), ErrorCode::MarshallingError),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err}");
        }
        assert_eq!(ErrorCode::NoNode.code(), -101);
        assert_eq!(ErrorCode::NoChildrenForEphemerals.code(), -108);
    }
}
