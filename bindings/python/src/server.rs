//! The coord server inside Python: `python -m coord` and `coord.testing`.

use std::path::PathBuf;

use clap::Parser;
use pyo3::prelude::*;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{runtime, CoordError, ServerStartError};

/// A coord server running in this process, on the module's runtime.
#[pyclass(module = "coord._native", frozen)]
pub struct NativeServer {
    address: String,
    stop: std::sync::Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

fn start(py: Python<'_>, flags: coord_server::Flags) -> PyResult<NativeServer> {
    let config =
        coord_server::Config::load(flags).map_err(|e| ServerStartError::new_err(e.to_string()))?;
    let runtime = runtime()?;
    let server = py
        .detach(|| runtime.block_on(coord_server::Server::start(config)))
        .map_err(|e| ServerStartError::new_err(e.to_string()))?;
    let address = server
        .local_addr()
        .map_err(|e| ServerStartError::new_err(e.to_string()))?
        .to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = runtime.spawn(server.run(async {
        let _ = stopped.await;
    }));
    Ok(NativeServer {
        address,
        stop: std::sync::Mutex::new(Some((stop, serving))),
    })
}

#[pymethods]
impl NativeServer {
    /// Starts a standalone server keeping its data in `data_dir`, serving clients on
    /// `client_addr` ("127.0.0.1:0" picks a free port), with the `coord` binary's other
    /// flags in `args` (say ["--tick-ms", "200"], or ["--config", "member.toml"]).
    #[staticmethod]
    #[pyo3(signature = (data_dir=None, client_addr=None, args=Vec::new()))]
    fn start(
        py: Python<'_>,
        data_dir: Option<PathBuf>,
        client_addr: Option<String>,
        args: Vec<String>,
    ) -> PyResult<NativeServer> {
        let mut flags =
            coord_server::Flags::try_parse_from(std::iter::once("coord".to_owned()).chain(args))
                .map_err(|e| ServerStartError::new_err(e.to_string()))?;
        if data_dir.is_some() {
            flags.data_dir = data_dir;
        }
        if client_addr.is_some() {
            flags.client_addr = client_addr;
        }
        start(py, flags)
    }

    /// The address clients connect to ("127.0.0.1:PORT").
    #[getter]
    fn address(&self) -> String {
        self.address.clone()
    }

    /// Stops serving: clients see their connections close. A second stop does nothing.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let running = self
            .stop
            .lock()
            .map_err(|_| CoordError::new_err("server state poisoned"))?
            .take();
        if let Some((stop, serving)) = running {
            let _ = stop.send(());
            let runtime = runtime()?;
            let _ = py.detach(|| runtime.block_on(serving));
        }
        Ok(())
    }
}

/// `python -m coord`: runs a standalone server with the `coord` binary's flags (`argv` without
/// the program name) until SIGINT or SIGTERM; returns the exit code.
#[pyfunction]
pub fn run_server(py: Python<'_>, argv: Vec<String>) -> PyResult<i32> {
    let flags = match coord_server::Flags::try_parse_from(
        std::iter::once("coord".to_owned()).chain(argv),
    ) {
        Ok(flags) => flags,
        Err(e) => {
            // --help and --version land here too, as clap prints them.
            let _ = e.print();
            return Ok(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if flags.command.is_some() {
        eprintln!("coord: `coord dev` is a command of the coord binary, not of `python -m coord`");
        return Ok(2);
    }
    let server = match start(py, flags) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("coord: {e}");
            return Ok(1);
        }
    };
    eprintln!("coord listening on {} (standalone)", server.address);
    let runtime = runtime()?;
    py.detach(|| {
        runtime.block_on(async {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async {
                    match terminate.as_mut() {
                        Some(signal) => { signal.recv().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
        })
    });
    server.stop(py)?;
    Ok(0)
}
