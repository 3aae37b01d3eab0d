//! The recipes, for the Python classes in `coord/recipes.py`.

use std::time::Duration;

use coord_client::recipes::{Barrier, Counter, Election, Leadership, Lock, LockGuard, Queue};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::Mutex;

use crate::client::NativeClient;
use crate::{block_on, to_py, wait};

fn seconds(timeout: Option<f64>) -> Option<Duration> {
    timeout.map(|s| Duration::from_secs_f64(s.max(0.0)))
}

/// A held lock.
#[pyclass(module = "coord._native", frozen)]
pub struct NativeLock {
    guard: Mutex<Option<LockGuard>>,
}

#[pymethods]
impl NativeLock {
    /// Takes the lock on `path`, waiting at most `timeout` seconds (None: as long as it
    /// takes); None if it was not had in time.
    #[staticmethod]
    #[pyo3(signature = (client, path, identifier, timeout=None))]
    fn acquire(
        py: Python<'_>,
        client: &NativeClient,
        path: &str,
        identifier: Vec<u8>,
        timeout: Option<f64>,
    ) -> PyResult<Option<NativeLock>> {
        let lock = Lock::new(client.client(), path).with_data(&identifier);
        let guard = match seconds(timeout) {
            Some(limit) => block_on(py, lock.acquire_timeout(limit))?,
            None => Some(block_on(py, lock.acquire())?),
        };
        Ok(guard.map(|guard| NativeLock {
            guard: Mutex::new(Some(guard)),
        }))
    }

    /// The identifiers of every contender for the lock on `path`, the holder first.
    #[staticmethod]
    fn contenders(py: Python<'_>, client: &NativeClient, path: &str) -> PyResult<Vec<Py<PyBytes>>> {
        let found = block_on(py, Lock::new(client.client(), path).contenders())?;
        Ok(found
            .iter()
            .map(|id| PyBytes::new(py, id).unbind())
            .collect())
    }

    /// The node that holds the lock.
    #[getter]
    fn path(&self) -> PyResult<Option<String>> {
        let guard = self
            .guard
            .try_lock()
            .map_err(|_| crate::CoordError::new_err("lock busy"))?;
        Ok(guard.as_ref().map(|g| g.path().to_owned()))
    }

    /// Releases the lock (a second release does nothing).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let guard = wait(py, async { self.guard.lock().await.take() })?;
        match guard {
            Some(guard) => block_on(py, guard.release()),
            None => Ok(()),
        }
    }
}

/// Leading an election.
#[pyclass(module = "coord._native", frozen)]
pub struct NativeLeadership {
    leadership: Mutex<Option<Leadership>>,
    /// Wakes a `wait_lost` in another thread, so that `resign` can have the leadership.
    resigning: tokio::sync::Notify,
}

#[pymethods]
impl NativeLeadership {
    /// Joins the election on `path` and waits to lead, at most `timeout` seconds (None: as
    /// long as it takes); None if not leading in time.
    #[staticmethod]
    #[pyo3(signature = (client, path, identifier, timeout=None))]
    fn campaign(
        py: Python<'_>,
        client: &NativeClient,
        path: &str,
        identifier: Vec<u8>,
        timeout: Option<f64>,
    ) -> PyResult<Option<NativeLeadership>> {
        let election = Election::new(client.client(), path, &identifier);
        let leading = match seconds(timeout) {
            Some(limit) => {
                // Safe to cut short: a campaign given up cleans its node up.
                match wait(py, async {
                    tokio::time::timeout(limit, election.campaign()).await
                })? {
                    Ok(result) => Some(result.map_err(to_py)?),
                    Err(_) => None,
                }
            }
            None => Some(block_on(py, election.campaign())?),
        };
        Ok(leading.map(|leadership| NativeLeadership {
            leadership: Mutex::new(Some(leadership)),
            resigning: tokio::sync::Notify::new(),
        }))
    }

    /// The identifiers of every contender, the leader first.
    #[staticmethod]
    fn contenders(py: Python<'_>, client: &NativeClient, path: &str) -> PyResult<Vec<Py<PyBytes>>> {
        let found = block_on(py, Election::new(client.client(), path, b"").contenders())?;
        Ok(found
            .iter()
            .map(|id| PyBytes::new(py, id).unbind())
            .collect())
    }

    /// Waits at most `timeout` seconds (None: as long as it takes) for the leadership to be
    /// lost; True if it was.
    #[pyo3(signature = (timeout=None))]
    fn wait_lost(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let lost = async {
            let mut leadership = self.leadership.lock().await;
            let Some(leading) = leadership.as_mut() else {
                return true;
            };
            tokio::select! {
                () = leading.lost() => true,
                // Resigning: what is resigned is lost.
                () = self.resigning.notified() => true,
            }
        };
        match seconds(timeout) {
            Some(limit) => wait(py, async {
                tokio::time::timeout(limit, lost).await.is_ok()
            }),
            None => wait(py, lost),
        }
    }

    /// Gives the leadership up (also while another thread waits in `wait_lost`).
    fn resign(&self, py: Python<'_>) -> PyResult<()> {
        self.resigning.notify_one();
        let leading = wait(py, async { self.leadership.lock().await.take() })?;
        match leading {
            Some(leading) => block_on(py, leading.resign()),
            None => Ok(()),
        }
    }
}

/// Raises ("raise"), lowers ("remove") or waits on ("wait", at most `timeout` seconds) the
/// barrier on `path`; for "wait", False if it was still up in time.
#[pyfunction]
#[pyo3(signature = (client, path, action, timeout=None))]
pub fn barrier_wait(
    py: Python<'_>,
    client: &NativeClient,
    path: &str,
    action: &str,
    timeout: Option<f64>,
) -> PyResult<bool> {
    let barrier = Barrier::new(client.client(), path);
    match action {
        "raise" => block_on(py, barrier.raise()).map(|()| true),
        "remove" => block_on(py, barrier.remove()).map(|()| true),
        _ => match seconds(timeout) {
            Some(limit) => match wait(py, async {
                tokio::time::timeout(limit, barrier.wait()).await
            })? {
                Ok(result) => result.map(|()| true).map_err(to_py),
                Err(_) => Ok(false),
            },
            None => block_on(py, barrier.wait()).map(|()| true),
        },
    }
}

/// Adds `delta` to the counter on `path` (0 reads it); returns the new value.
#[pyfunction]
pub fn counter_add(py: Python<'_>, client: &NativeClient, path: &str, delta: i64) -> PyResult<i64> {
    let counter = Counter::new(client.client(), path);
    if delta == 0 {
        return block_on(py, counter.get());
    }
    block_on(py, counter.add(delta))
}

/// The queue on `path`: "put" appends `item`; "take" takes the first item, waiting at most
/// `timeout` seconds (None: as long as it takes; 0: not at all); "len" counts the items.
#[pyfunction]
#[pyo3(signature = (client, path, action, item=None, timeout=None))]
pub fn queue_take(
    py: Python<'_>,
    client: &NativeClient,
    path: &str,
    action: &str,
    item: Option<Vec<u8>>,
    timeout: Option<f64>,
) -> PyResult<Py<PyAny>> {
    let queue = Queue::new(client.client(), path);
    match action {
        "put" => {
            block_on(py, queue.put(&item.unwrap_or_default()))?;
            Ok(py.None())
        }
        "len" => Ok(block_on(py, queue.len())?
            .into_pyobject(py)?
            .into_any()
            .unbind()),
        _ => {
            let taken = match seconds(timeout) {
                Some(limit) if limit.is_zero() => block_on(py, queue.try_take())?,
                Some(limit) => block_on(py, queue.take_timeout(limit))?,
                None => Some(block_on(py, queue.take())?),
            };
            Ok(match taken {
                Some(item) => PyBytes::new(py, &item).into_any().unbind(),
                None => py.None(),
            })
        }
    }
}
