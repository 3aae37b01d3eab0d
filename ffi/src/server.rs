//! `coord_server`: a coord server inside the calling process, with its own runtime.

use std::ffi::{c_char, CString};
use std::path::PathBuf;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::panic::{guard, guard_void};
use crate::ptr;
use crate::result::coord_result;

/// How long `coord_server_free` waits for the server to finish its work in hand.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// A running embedded server. Opaque; made by `coord_server_start`, stopped and freed by
/// `coord_server_stop`.
pub struct coord_server {
    runtime: Runtime,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<()>>,
    address: CString,
}

/// Starts a standalone coord server in this process, keeping its data in `data_dir` (made if
/// missing) and serving clients on `client_addr` ("127.0.0.1:0" picks a free port; NULL means
/// that). Its address is then `coord_server_address`. Writes the handle to `*server`.
#[no_mangle]
pub extern "C" fn coord_server_start(
    data_dir: *const c_char,
    client_addr: *const c_char,
    server: *mut *mut coord_server,
) -> coord_result {
    guard(|| {
        let data_dir = ptr::str_arg(data_dir)?;
        let client_addr = ptr::opt_str_arg(client_addr)?.unwrap_or("127.0.0.1:0");
        ptr::check_out(server)?;
        let flags = ::coord_server::Flags {
            data_dir: Some(PathBuf::from(data_dir)),
            client_addr: Some(client_addr.to_owned()),
            ..::coord_server::Flags::default()
        };
        let config =
            ::coord_server::Config::load(flags).map_err(|_| coord_result::COORD_SERVER_START)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("coord-server")
            .enable_all()
            .build()
            .map_err(|_| coord_result::COORD_IO)?;
        let started = runtime
            .block_on(::coord_server::Server::start(config))
            .map_err(|_| coord_result::COORD_SERVER_START)?;
        let address = started
            .local_addr()
            .map_err(|_| coord_result::COORD_SERVER_START)?
            .to_string();
        let address = CString::new(address).map_err(|_| coord_result::COORD_SERVER_START)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = runtime.spawn(started.run(async {
            let _ = stopped.await;
        }));
        let handle = coord_server {
            runtime,
            stop: Some(stop),
            serving: Some(serving),
            address,
        };
        ptr::write(server, ptr::give(handle));
        Ok(())
    })
}

/// The address the server serves clients on ("127.0.0.1:PORT"), a connection string for
/// `coord_client_open`. Owned by the server: valid until `coord_server_stop`. NULL for a NULL
/// server.
#[no_mangle]
pub extern "C" fn coord_server_address(server: *const coord_server) -> *const c_char {
    match ptr::handle(server) {
        Ok(handle) => handle.address.as_ptr(),
        Err(_) => std::ptr::null(),
    }
}

/// Stops the server (its clients see their connections close) and frees the handle. NULL is
/// fine.
#[no_mangle]
pub extern "C" fn coord_server_stop(server: *mut coord_server) {
    guard_void(|| {
        let Some(mut handle) = ptr::take(server) else {
            return;
        };
        if let Some(stop) = handle.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = handle.serving.take() {
            let _ = handle
                .runtime
                .block_on(async { tokio::time::timeout(STOP_WAIT, serving).await });
        }
        handle.runtime.shutdown_timeout(STOP_WAIT);
    });
}
