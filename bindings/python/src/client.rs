//! `NativeClient`: a coord-client session for Python.

use std::time::Duration;

use coord_client::{
    Acl, AddWatchMode, Client, CreateMode, Error, Id, Op, OpResult, PersistentWatch, SessionState,
    Stat, Watch, WatcherType,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::{mpsc, Mutex};

use crate::{block_on, runtime, to_py, wait, BadArgumentsError};

/// Callback events waiting for the client's Python event thread at most; past it, the tasks
/// that deliver them wait.
const EVENTS_QUEUED_MAX: usize = 1024;

/// A Stat as Python sees it, in kazoo's ZnodeStat order.
pub type StatTuple = (i64, i64, i64, i64, i32, i32, i32, i64, i32, i32, i64);

pub fn stat_tuple(s: Stat) -> StatTuple {
    (
        s.czxid,
        s.mzxid,
        s.ctime,
        s.mtime,
        s.version,
        s.cversion,
        s.aversion,
        s.ephemeral_owner,
        s.data_length,
        s.num_children,
        s.pzxid,
    )
}

/// An ACL entry as Python passes it: (perms, scheme, id).
type AclTuple = (i32, String, String);

/// A transaction's op as Python passes it: (op, path, data, version, mode, acl).
type OpTuple = (String, String, Vec<u8>, i32, i32, Vec<AclTuple>);

fn acl_list(acl: Vec<AclTuple>) -> Vec<Acl> {
    if acl.is_empty() {
        return Acl::open_unsafe();
    }
    acl.into_iter()
        .map(|(perms, scheme, id)| Acl {
            perms,
            id: Id::new(&scheme, &id),
        })
        .collect()
}

fn state_name(state: SessionState) -> &'static str {
    match state {
        SessionState::Connected => "CONNECTED",
        SessionState::Suspended => "SUSPENDED",
        SessionState::Lost => "LOST",
        _ => "CLOSED",
    }
}

/// What the Python event thread is handed: a fired watch's callback and its event, or a
/// change of the session's state.
enum Event {
    Watch {
        callback: Py<PyAny>,
        event: Result<(i32, String), Error>,
    },
    State(SessionState),
}

/// A session. Its methods block (with the GIL released) and may be called from any thread.
#[pyclass(module = "coord._native", frozen)]
pub struct NativeClient {
    client: Client,
    events: mpsc::Sender<Event>,
    incoming: Mutex<mpsc::Receiver<Event>>,
}

impl NativeClient {
    /// Hands `watch`'s event to `callback`, through the event thread, when it fires.
    fn deliver(&self, watch: Watch, callback: Py<PyAny>) -> PyResult<()> {
        let events = self.events.clone();
        runtime()?.spawn(async move {
            let event = watch.await.map(|e| (e.event_type.code(), e.path));
            let _ = events.send(Event::Watch { callback, event }).await;
        });
        Ok(())
    }
}

#[pymethods]
impl NativeClient {
    /// Connects to a server of `hosts` and opens a session of `timeout` seconds.
    #[staticmethod]
    fn connect(py: Python<'_>, hosts: &str, timeout: f64) -> PyResult<NativeClient> {
        let timeout = Duration::try_from_secs_f64(timeout).map_err(|_| {
            BadArgumentsError::new_err("timeout must be a positive number of seconds")
        })?;
        let client = block_on(py, Client::connect(hosts, timeout))?;
        let (events, incoming) = mpsc::channel(EVENTS_QUEUED_MAX);
        let mut changes = client.session_events();
        let states = events.clone();
        runtime()?.spawn(async move {
            while let Some(state) = changes.next().await {
                if states.send(Event::State(state)).await.is_err() {
                    return;
                }
            }
        });
        Ok(NativeClient {
            client,
            events,
            incoming: Mutex::new(incoming),
        })
    }

    #[getter]
    fn session_id(&self) -> i64 {
        self.client.session_id()
    }

    #[getter]
    fn session_timeout(&self) -> f64 {
        self.client.session_timeout().as_secs_f64()
    }

    #[getter]
    fn state(&self) -> &'static str {
        state_name(self.client.state())
    }

    #[getter]
    fn server(&self) -> Option<String> {
        self.client.server()
    }

    /// The next event for the event thread, waiting at most `timeout` seconds:
    /// ("watch", callback, event_type, path, error) or ("state", None, name, "", None).
    fn next_event(&self, py: Python<'_>, timeout: f64) -> PyResult<Option<Py<PyAny>>> {
        let wait = Duration::from_secs_f64(timeout.max(0.0));
        let runtime = runtime()?;
        let event = py.detach(|| {
            runtime.block_on(async {
                let mut incoming = self.incoming.lock().await;
                tokio::time::timeout(wait, incoming.recv())
                    .await
                    .ok()
                    .flatten()
            })
        });
        let Some(event) = event else {
            return Ok(None);
        };
        let tuple = match event {
            Event::Watch { callback, event } => match event {
                Ok((event_type, path)) => ("watch", Some(callback), event_type, path, None),
                Err(e) => ("watch", Some(callback), -1, String::new(), Some(to_py(e))),
            },
            Event::State(state) => ("state", None, 0, state_name(state).to_owned(), None),
        };
        Ok(Some(tuple.into_pyobject(py)?.into_any().unbind()))
    }

    #[pyo3(signature = (path, data, acl, mode, ttl_ms=None))]
    fn create(
        &self,
        py: Python<'_>,
        path: &str,
        data: Vec<u8>,
        acl: Vec<AclTuple>,
        mode: i32,
        ttl_ms: Option<u64>,
    ) -> PyResult<String> {
        let mode = CreateMode::from_code(mode)
            .ok_or_else(|| BadArgumentsError::new_err("unknown create mode"))?;
        let acl = acl_list(acl);
        match ttl_ms {
            Some(ms) => block_on(py, async {
                self.client
                    .create_ttl(path, &data, &acl, mode, Duration::from_millis(ms))
                    .await
                    .map(|(path, _)| path)
            }),
            None => block_on(py, self.client.create(path, &data, &acl, mode)),
        }
    }

    #[pyo3(signature = (path, watch=None))]
    fn get(
        &self,
        py: Python<'_>,
        path: &str,
        watch: Option<Py<PyAny>>,
    ) -> PyResult<(Py<PyBytes>, StatTuple)> {
        let (data, stat) = match watch {
            Some(callback) => {
                let (data, stat, fired) = block_on(py, self.client.get_data_watch(path))?;
                self.deliver(fired, callback)?;
                (data, stat)
            }
            None => block_on(py, self.client.get_data(path))?,
        };
        Ok((PyBytes::new(py, &data).unbind(), stat_tuple(stat)))
    }

    #[pyo3(signature = (path, watch=None))]
    fn exists(
        &self,
        py: Python<'_>,
        path: &str,
        watch: Option<Py<PyAny>>,
    ) -> PyResult<Option<StatTuple>> {
        let stat = match watch {
            Some(callback) => {
                let (stat, fired) = block_on(py, self.client.exists_watch(path))?;
                self.deliver(fired, callback)?;
                stat
            }
            None => block_on(py, self.client.exists(path))?,
        };
        Ok(stat.map(stat_tuple))
    }

    #[pyo3(signature = (path, watch=None))]
    fn get_children(
        &self,
        py: Python<'_>,
        path: &str,
        watch: Option<Py<PyAny>>,
    ) -> PyResult<Vec<String>> {
        match watch {
            Some(callback) => {
                let (children, fired) = block_on(py, self.client.get_children_watch(path))?;
                self.deliver(fired, callback)?;
                Ok(children)
            }
            None => block_on(py, self.client.get_children(path)),
        }
    }

    fn get_children_with_stat(
        &self,
        py: Python<'_>,
        path: &str,
    ) -> PyResult<(Vec<String>, StatTuple)> {
        let (children, stat) = block_on(py, self.client.get_children2(path))?;
        Ok((children, stat_tuple(stat)))
    }

    fn set(&self, py: Python<'_>, path: &str, data: Vec<u8>, version: i32) -> PyResult<StatTuple> {
        block_on(py, self.client.set_data(path, &data, version)).map(stat_tuple)
    }

    fn delete(&self, py: Python<'_>, path: &str, version: i32) -> PyResult<()> {
        block_on(py, self.client.delete(path, version))
    }

    fn get_acls(&self, py: Python<'_>, path: &str) -> PyResult<(Vec<AclTuple>, StatTuple)> {
        let (acl, stat) = block_on(py, self.client.get_acl(path))?;
        let acl = acl
            .into_iter()
            .map(|a| (a.perms, a.id.scheme, a.id.id))
            .collect();
        Ok((acl, stat_tuple(stat)))
    }

    fn set_acls(
        &self,
        py: Python<'_>,
        path: &str,
        acl: Vec<AclTuple>,
        version: i32,
    ) -> PyResult<StatTuple> {
        let acl = acl_list(acl);
        block_on(py, self.client.set_acl(path, &acl, version)).map(stat_tuple)
    }

    fn sync(&self, py: Python<'_>, path: &str) -> PyResult<String> {
        block_on(py, self.client.sync(path))
    }

    fn add_auth(&self, py: Python<'_>, scheme: &str, credential: Vec<u8>) -> PyResult<()> {
        block_on(py, self.client.add_auth(scheme, &credential))
    }

    fn whoami(&self, py: Python<'_>) -> PyResult<Vec<(String, String)>> {
        let ids = block_on(py, self.client.who_am_i())?;
        Ok(ids
            .into_iter()
            .map(|info| (info.auth_scheme, info.user))
            .collect())
    }

    /// Runs a transaction of (op, path, data, version, mode, acl) tuples, op one of "create",
    /// "delete", "set", "check"; returns one result per op: the created path, True, or a stat.
    fn multi(&self, py: Python<'_>, ops: Vec<OpTuple>) -> PyResult<Vec<Py<PyAny>>> {
        let ops = ops
            .into_iter()
            .map(|(op, path, data, version, mode, acl)| {
                Ok(match op.as_str() {
                    "create" => Op::Create {
                        path,
                        data,
                        acl: acl_list(acl),
                        mode: CreateMode::from_code(mode)
                            .ok_or_else(|| BadArgumentsError::new_err("unknown create mode"))?,
                    },
                    "delete" => Op::Delete { path, version },
                    "set" => Op::SetData {
                        path,
                        data,
                        version,
                    },
                    "check" => Op::Check { path, version },
                    other => {
                        return Err(BadArgumentsError::new_err(format!("unknown op {other:?}")))
                    }
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let results = block_on(py, self.client.multi(&ops))?;
        results
            .into_iter()
            .map(|result| {
                Ok(match result {
                    OpResult::Create { path } => path.into_pyobject(py)?.into_any().unbind(),
                    OpResult::SetData { stat } => {
                        stat_tuple(stat).into_pyobject(py)?.into_any().unbind()
                    }
                    OpResult::Delete | OpResult::Check => {
                        true.into_pyobject(py)?.to_owned().into_any().unbind()
                    }
                })
            })
            .collect()
    }

    fn add_watch(
        &self,
        py: Python<'_>,
        path: &str,
        recursive: bool,
    ) -> PyResult<NativePersistentWatch> {
        let mode = if recursive {
            AddWatchMode::PersistentRecursive
        } else {
            AddWatchMode::Persistent
        };
        let watch = block_on(py, self.client.add_watch(path, mode))?;
        Ok(NativePersistentWatch {
            watch: Mutex::new(watch),
        })
    }

    /// Removes watches on `path`: `kind` is ZooKeeper's WatcherType (1 children, 2 data,
    /// 3 any, 4 persistent, 5 persistent recursive).
    fn remove_watches(&self, py: Python<'_>, path: &str, kind: i32) -> PyResult<()> {
        let kind = WatcherType::from_code(kind)
            .ok_or_else(|| BadArgumentsError::new_err("unknown watcher type"))?;
        block_on(py, self.client.remove_watches(path, kind))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        block_on(py, self.client.clone().close())
    }
}

impl NativeClient {
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// A persistent watch: `next` gives its events in order.
#[pyclass(module = "coord._native", frozen)]
pub struct NativePersistentWatch {
    watch: Mutex<PersistentWatch>,
}

#[pymethods]
impl NativePersistentWatch {
    /// The next (event_type, path), waiting at most `timeout` seconds (None: as long as it
    /// takes); None if none came in time.
    #[pyo3(signature = (timeout=None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<(i32, String)>> {
        let next = wait(py, async {
            let mut watch = self.watch.lock().await;
            match timeout {
                Some(seconds) => {
                    let limit = Duration::from_secs_f64(seconds.max(0.0));
                    tokio::time::timeout(limit, watch.next()).await.ok()
                }
                None => Some(watch.next().await),
            }
        })?;
        match next {
            None => Ok(None),
            Some(Ok(event)) => Ok(Some((event.event_type.code(), event.path))),
            Some(Err(e)) => Err(to_py(e)),
        }
    }
}
