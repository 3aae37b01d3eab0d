//! `coord._native`: the Rust side of the `coord` Python package. Thin by design: it converts
//! arguments, calls coord-client (or the server), and maps errors to exceptions; the Pythonic
//! API (keyword arguments, context managers, namedtuples, asyncio) is in `python/coord`.
//!
//! Every call that waits runs with the GIL released (`Python::detach`), on Rust values only.

use std::sync::Mutex;
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use tokio::runtime::Runtime;

mod client;
mod recipes;
mod server;

create_exception!(
    coord,
    CoordError,
    PyException,
    "Base class of every coord error."
);
create_exception!(
    coord,
    ZookeeperError,
    CoordError,
    "An error the server answered with."
);
create_exception!(
    coord,
    NoNodeError,
    ZookeeperError,
    "The node does not exist."
);
create_exception!(
    coord,
    NodeExistsError,
    ZookeeperError,
    "The node exists already."
);
create_exception!(
    coord,
    BadVersionError,
    ZookeeperError,
    "The version given is not the node's."
);
create_exception!(
    coord,
    NotEmptyError,
    ZookeeperError,
    "The node has children."
);
create_exception!(
    coord,
    NoAuthError,
    ZookeeperError,
    "The node's ACL does not allow it."
);
create_exception!(
    coord,
    InvalidACLError,
    ZookeeperError,
    "The ACL is not valid."
);
create_exception!(
    coord,
    NoChildrenForEphemeralsError,
    ZookeeperError,
    "Ephemeral nodes cannot have children."
);
create_exception!(
    coord,
    BadArgumentsError,
    ZookeeperError,
    "An argument is not valid."
);
create_exception!(
    coord,
    AuthFailedError,
    ZookeeperError,
    "The credentials were refused."
);
create_exception!(
    coord,
    OperationTimeoutError,
    ZookeeperError,
    "The wait ran out."
);
create_exception!(
    coord,
    UnimplementedError,
    ZookeeperError,
    "The server does not implement it."
);
create_exception!(
    coord,
    NoWatcherError,
    ZookeeperError,
    "There is no such watch."
);
create_exception!(
    coord,
    SessionMovedError,
    ZookeeperError,
    "The session moved to another server."
);
create_exception!(
    coord,
    NotReadOnlyCallError,
    ZookeeperError,
    "A read-only server refused a write."
);
create_exception!(
    coord,
    QuotaExceededError,
    ZookeeperError,
    "A quota is exceeded."
);
create_exception!(
    coord,
    ThrottledOpError,
    ZookeeperError,
    "The server is throttling requests."
);
create_exception!(
    coord,
    RuntimeInconsistency,
    ZookeeperError,
    "A multi op after a failed one."
);
create_exception!(
    coord,
    SystemZookeeperError,
    ZookeeperError,
    "The server failed."
);
create_exception!(
    coord,
    ConnectionLoss,
    ZookeeperError,
    "The connection was lost: the call may or may not have happened."
);
create_exception!(
    coord,
    SessionExpiredError,
    ZookeeperError,
    "The session has expired."
);
create_exception!(
    coord,
    ConnectionClosedError,
    SessionExpiredError,
    "The session was closed."
);
create_exception!(
    coord,
    MarshallingError,
    ZookeeperError,
    "The server sent something unreadable."
);
create_exception!(
    coord,
    UnreachableError,
    CoordError,
    "No server could be reached."
);
create_exception!(
    coord,
    EventsDroppedError,
    CoordError,
    "A watch reader fell behind; events were dropped."
);
create_exception!(
    coord,
    ServerStartError,
    CoordError,
    "The embedded server could not start."
);

/// The runtime every client and embedded server of the process runs on. A child made by
/// `fork()` gets a runtime of its own (the parent's threads are not in it); clients made before
/// the fork do not work in the child.
pub(crate) fn runtime() -> PyResult<&'static Runtime> {
    static RUNTIME: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);
    let mut current = RUNTIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let pid = std::process::id();
    if let Some((owner, runtime)) = *current {
        if owner == pid {
            return Ok(runtime);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("coord")
        .enable_all()
        .build()
        .map_err(|e| CoordError::new_err(format!("cannot start the runtime: {e}")))?;
    // Lives as long as the process: clients and servers hold on to it. A parent's runtime is
    // left alone in a forked child, whose copy of it has no threads to stop.
    let runtime: &'static Runtime = Box::leak(Box::new(runtime));
    *current = Some((pid, runtime));
    Ok(runtime)
}

/// The exception for a client error, with kazoo's class names.
pub(crate) fn to_py(error: coord_client::Error) -> PyErr {
    use coord_client::{Error, ErrorCode};
    let message = error.to_string();
    match error {
        Error::ConnectionLoss => ConnectionLoss::new_err(message),
        Error::SessionExpired => SessionExpiredError::new_err(message),
        Error::Closed => ConnectionClosedError::new_err(message),
        Error::Unreachable(_) => UnreachableError::new_err(message),
        Error::ConnectString(_) => BadArgumentsError::new_err(message),
        Error::Malformed(_) => MarshallingError::new_err(message),
        Error::Lagged(_) => EventsDroppedError::new_err(message),
        Error::Server(code) => {
            let message = format!("{code:?}");
            match code {
                ErrorCode::NoNode => NoNodeError::new_err(message),
                ErrorCode::NodeExists => NodeExistsError::new_err(message),
                ErrorCode::BadVersion => BadVersionError::new_err(message),
                ErrorCode::NotEmpty => NotEmptyError::new_err(message),
                ErrorCode::NoAuth => NoAuthError::new_err(message),
                ErrorCode::InvalidAcl => InvalidACLError::new_err(message),
                ErrorCode::NoChildrenForEphemerals => {
                    NoChildrenForEphemeralsError::new_err(message)
                }
                ErrorCode::BadArguments => BadArgumentsError::new_err(message),
                ErrorCode::AuthFailed => AuthFailedError::new_err(message),
                ErrorCode::OperationTimeout => OperationTimeoutError::new_err(message),
                ErrorCode::Unimplemented => UnimplementedError::new_err(message),
                ErrorCode::NoWatcher => NoWatcherError::new_err(message),
                ErrorCode::SessionMoved => SessionMovedError::new_err(message),
                ErrorCode::NotReadOnly => NotReadOnlyCallError::new_err(message),
                ErrorCode::QuotaExceeded => QuotaExceededError::new_err(message),
                ErrorCode::ThrottledOp => ThrottledOpError::new_err(message),
                ErrorCode::RuntimeInconsistency => RuntimeInconsistency::new_err(message),
                ErrorCode::ConnectionLoss => ConnectionLoss::new_err(message),
                ErrorCode::SessionExpired => SessionExpiredError::new_err(message),
                ErrorCode::MarshallingError => MarshallingError::new_err(message),
                _ => SystemZookeeperError::new_err(message),
            }
        }
        _ => CoordError::new_err(message),
    }
}

/// How often a blocking call looks up from its wait for a signal (Ctrl-C) to Python.
const SIGNAL_CHECK_EVERY: Duration = Duration::from_millis(100);

/// Runs `call` on the runtime with the GIL released; maps its error. The wait is cut into
/// slices, between which Python's signal handlers run: Ctrl-C interrupts a lock wait as it
/// does any Python wait (the call is then dropped, which the recipes clean up after).
pub(crate) fn block_on<T: Send>(
    py: Python<'_>,
    call: impl std::future::Future<Output = Result<T, coord_client::Error>> + Send,
) -> PyResult<T> {
    wait(py, call)?.map_err(to_py)
}

/// Runs `call` to its end on the runtime with the GIL released, looking up for signals.
pub(crate) fn wait<T: Send>(
    py: Python<'_>,
    call: impl std::future::Future<Output = T> + Send,
) -> PyResult<T> {
    let runtime = runtime()?;
    let mut call = std::pin::pin!(call);
    loop {
        let slice = py.detach(|| {
            runtime
                .block_on(async { tokio::time::timeout(SIGNAL_CHECK_EVERY, call.as_mut()).await })
        });
        match slice {
            Ok(done) => return Ok(done),
            Err(_) => py.check_signals()?,
        }
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    for (name, class) in [
        ("CoordError", py.get_type::<CoordError>()),
        ("ZookeeperError", py.get_type::<ZookeeperError>()),
        ("NoNodeError", py.get_type::<NoNodeError>()),
        ("NodeExistsError", py.get_type::<NodeExistsError>()),
        ("BadVersionError", py.get_type::<BadVersionError>()),
        ("NotEmptyError", py.get_type::<NotEmptyError>()),
        ("NoAuthError", py.get_type::<NoAuthError>()),
        ("InvalidACLError", py.get_type::<InvalidACLError>()),
        (
            "NoChildrenForEphemeralsError",
            py.get_type::<NoChildrenForEphemeralsError>(),
        ),
        ("BadArgumentsError", py.get_type::<BadArgumentsError>()),
        ("AuthFailedError", py.get_type::<AuthFailedError>()),
        (
            "OperationTimeoutError",
            py.get_type::<OperationTimeoutError>(),
        ),
        ("UnimplementedError", py.get_type::<UnimplementedError>()),
        ("NoWatcherError", py.get_type::<NoWatcherError>()),
        ("SessionMovedError", py.get_type::<SessionMovedError>()),
        (
            "NotReadOnlyCallError",
            py.get_type::<NotReadOnlyCallError>(),
        ),
        ("QuotaExceededError", py.get_type::<QuotaExceededError>()),
        ("ThrottledOpError", py.get_type::<ThrottledOpError>()),
        (
            "RuntimeInconsistency",
            py.get_type::<RuntimeInconsistency>(),
        ),
        (
            "SystemZookeeperError",
            py.get_type::<SystemZookeeperError>(),
        ),
        ("ConnectionLoss", py.get_type::<ConnectionLoss>()),
        ("SessionExpiredError", py.get_type::<SessionExpiredError>()),
        (
            "ConnectionClosedError",
            py.get_type::<ConnectionClosedError>(),
        ),
        ("MarshallingError", py.get_type::<MarshallingError>()),
        ("UnreachableError", py.get_type::<UnreachableError>()),
        ("EventsDroppedError", py.get_type::<EventsDroppedError>()),
        ("ServerStartError", py.get_type::<ServerStartError>()),
    ] {
        m.add(name, class)?;
    }
    m.add_class::<client::NativeClient>()?;
    m.add_class::<client::NativePersistentWatch>()?;
    m.add_class::<recipes::NativeLock>()?;
    m.add_class::<recipes::NativeLeadership>()?;
    m.add_class::<server::NativeServer>()?;
    m.add_function(wrap_pyfunction!(recipes::barrier_wait, m)?)?;
    m.add_function(wrap_pyfunction!(recipes::counter_add, m)?)?;
    m.add_function(wrap_pyfunction!(recipes::queue_take, m)?)?;
    m.add_function(wrap_pyfunction!(server::run_server, m)?)?;
    Ok(())
}
