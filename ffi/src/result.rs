//! `coord_result`: what every libcoord function returns.

use std::ffi::{c_char, CStr};

use coord_client::{Error, ErrorCode};

/// The outcome of a libcoord call. `COORD_OK` is 0; [`coord_strerror`] explains each.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum coord_result {
    COORD_OK = 0,
    /// The node does not exist (ZooKeeper's NoNode).
    COORD_NO_NODE = 1,
    /// The node exists already (NodeExists).
    COORD_NODE_EXISTS = 2,
    /// The version given is not the node's (BadVersion).
    COORD_BAD_VERSION = 3,
    /// The node has children (NotEmpty).
    COORD_NOT_EMPTY = 4,
    /// The ACL does not allow it (NoAuth).
    COORD_NO_AUTH = 5,
    /// The ACL given is not valid (InvalidACL).
    COORD_INVALID_ACL = 6,
    /// Ephemeral nodes cannot have children (NoChildrenForEphemerals).
    COORD_NO_CHILDREN_FOR_EPHEMERALS = 7,
    /// An argument is not valid: a path, a mode, a TTL (BadArguments).
    COORD_BAD_ARGUMENTS = 8,
    /// The connection was lost: the call may or may not have happened.
    COORD_CONNECTION_LOSS = 9,
    /// The session is gone (expired, or no server took it back in time).
    COORD_SESSION_EXPIRED = 10,
    /// The session was closed.
    COORD_CLOSED = 11,
    /// No server of the connection string could be reached.
    COORD_UNREACHABLE = 12,
    /// The credentials were refused (AuthFailed).
    COORD_AUTH_FAILED = 13,
    /// The wait ran out (a lock not had in time; OperationTimeout).
    COORD_TIMEOUT = 14,
    /// The server does not implement it (Unimplemented).
    COORD_UNIMPLEMENTED = 15,
    /// There was no such watch to remove (NoWatcher).
    COORD_NO_WATCHER = 16,
    /// The server refused for another reason; its ZooKeeper code is in the log.
    COORD_SERVER_ERROR = 17,
    /// The server sent something this client cannot read.
    COORD_MALFORMED = 18,
    /// A required pointer argument was NULL.
    COORD_NULL_ARGUMENT = 19,
    /// A string argument is not UTF-8.
    COORD_INVALID_UTF8 = 20,
    /// The connection string does not parse.
    COORD_BAD_CONNECT_STRING = 21,
    /// The embedded server could not start (its configuration, its data dir, its port).
    COORD_SERVER_START = 22,
    /// An operating system resource (a thread, a runtime) could not be had.
    COORD_IO = 23,
    /// A bug in libcoord: a panic, stopped at the boundary. Please report it.
    COORD_PANIC = 24,
    /// A persistent watch's callback fell behind and events were dropped.
    COORD_LAGGED = 25,
}

/// Every result, to read a C integer back without assuming it names one.
const ALL: [coord_result; 26] = {
    use coord_result::*;
    [
        COORD_OK,
        COORD_NO_NODE,
        COORD_NODE_EXISTS,
        COORD_BAD_VERSION,
        COORD_NOT_EMPTY,
        COORD_NO_AUTH,
        COORD_INVALID_ACL,
        COORD_NO_CHILDREN_FOR_EPHEMERALS,
        COORD_BAD_ARGUMENTS,
        COORD_CONNECTION_LOSS,
        COORD_SESSION_EXPIRED,
        COORD_CLOSED,
        COORD_UNREACHABLE,
        COORD_AUTH_FAILED,
        COORD_TIMEOUT,
        COORD_UNIMPLEMENTED,
        COORD_NO_WATCHER,
        COORD_SERVER_ERROR,
        COORD_MALFORMED,
        COORD_NULL_ARGUMENT,
        COORD_INVALID_UTF8,
        COORD_BAD_CONNECT_STRING,
        COORD_SERVER_START,
        COORD_IO,
        COORD_PANIC,
        COORD_LAGGED,
    ]
};

impl From<Error> for coord_result {
    fn from(error: Error) -> coord_result {
        use coord_result::*;
        match error {
            Error::ConnectionLoss => COORD_CONNECTION_LOSS,
            Error::SessionExpired => COORD_SESSION_EXPIRED,
            Error::Closed => COORD_CLOSED,
            Error::Unreachable(_) => COORD_UNREACHABLE,
            Error::ConnectString(_) => COORD_BAD_CONNECT_STRING,
            Error::Malformed(_) => COORD_MALFORMED,
            Error::Lagged(_) => COORD_LAGGED,
            Error::Server(code) => match code {
                ErrorCode::NoNode => COORD_NO_NODE,
                ErrorCode::NodeExists => COORD_NODE_EXISTS,
                ErrorCode::BadVersion => COORD_BAD_VERSION,
                ErrorCode::NotEmpty => COORD_NOT_EMPTY,
                ErrorCode::NoAuth => COORD_NO_AUTH,
                ErrorCode::InvalidAcl => COORD_INVALID_ACL,
                ErrorCode::NoChildrenForEphemerals => COORD_NO_CHILDREN_FOR_EPHEMERALS,
                ErrorCode::BadArguments => COORD_BAD_ARGUMENTS,
                ErrorCode::AuthFailed => COORD_AUTH_FAILED,
                ErrorCode::OperationTimeout => COORD_TIMEOUT,
                ErrorCode::Unimplemented => COORD_UNIMPLEMENTED,
                ErrorCode::NoWatcher => COORD_NO_WATCHER,
                ErrorCode::ConnectionLoss => COORD_CONNECTION_LOSS,
                ErrorCode::SessionExpired => COORD_SESSION_EXPIRED,
                _ => COORD_SERVER_ERROR,
            },
            _ => COORD_SERVER_ERROR,
        }
    }
}

/// A static, NUL-terminated English sentence for `result` (a `coord_result`; an unknown value
/// gets one too). Never NULL; not to be freed.
#[no_mangle]
pub extern "C" fn coord_strerror(result: u32) -> *const c_char {
    use coord_result::*;
    let Some(result) = ALL.iter().copied().find(|known| *known as u32 == result) else {
        return c"an unknown coord_result".as_ptr();
    };
    let text: &'static CStr = match result {
        COORD_OK => c"ok",
        COORD_NO_NODE => c"the node does not exist",
        COORD_NODE_EXISTS => c"the node exists already",
        COORD_BAD_VERSION => c"the version given is not the node's",
        COORD_NOT_EMPTY => c"the node has children",
        COORD_NO_AUTH => c"the node's ACL does not allow it",
        COORD_INVALID_ACL => c"the ACL is not valid",
        COORD_NO_CHILDREN_FOR_EPHEMERALS => c"ephemeral nodes cannot have children",
        COORD_BAD_ARGUMENTS => c"an argument is not valid",
        COORD_CONNECTION_LOSS => c"the connection was lost; the call may or may not have happened",
        COORD_SESSION_EXPIRED => c"the session has expired",
        COORD_CLOSED => c"the session was closed",
        COORD_UNREACHABLE => c"no server could be reached",
        COORD_AUTH_FAILED => c"the credentials were refused",
        COORD_TIMEOUT => c"the wait ran out",
        COORD_UNIMPLEMENTED => c"the server does not implement it",
        COORD_NO_WATCHER => c"there is no such watch",
        COORD_SERVER_ERROR => c"the server refused",
        COORD_MALFORMED => c"the server sent something this client cannot read",
        COORD_NULL_ARGUMENT => c"a required pointer argument is NULL",
        COORD_INVALID_UTF8 => c"a string argument is not UTF-8",
        COORD_BAD_CONNECT_STRING => c"the connection string does not parse",
        COORD_SERVER_START => c"the embedded server could not start",
        COORD_IO => c"an operating system resource could not be had",
        COORD_PANIC => c"a bug in libcoord (a panic was stopped); please report it",
        COORD_LAGGED => c"a watch callback fell behind and events were dropped",
    };
    text.as_ptr()
}
