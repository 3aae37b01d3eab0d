//! Lock, read-write lock and semaphore: a line of ephemeral sequential nodes under one
//! directory. A node holds once the nodes ahead of it allow it; until then it watches the one
//! node whose going could change that (for the semaphore, the line itself).

use std::time::Duration;

use tokio::time::Instant;

use tokio::runtime::Handle;

use super::{
    by_sequence, current_runtime, delete_in_background, join, name_of, retrying, Creating,
};
use crate::{Client, Error, ErrorCode, Watch};

/// When a node in line holds.
#[derive(Debug, Clone, Copy)]
pub(super) enum Rule {
    /// When it is first in line (a mutex, or a writer).
    Exclusive,
    /// When no writer is ahead of it (a reader).
    Shared,
    /// When fewer than this many nodes are ahead of it (a semaphore's leases).
    Window(usize),
}

const WRITE: &str = "write-";
const READ: &str = "read-";

/// A mutex among every client that names the same path, without herd effect: each waiter
/// watches only the node just ahead of its own, so a release wakes one waiter. Holders are
/// served in the order they asked. Not reentrant. The same as Curator's `InterProcessMutex`
/// and kazoo's `Lock` (which use other node names; do not mix them on one path).
#[derive(Clone)]
pub struct Lock {
    client: Client,
    dir: String,
    data: Vec<u8>,
}

impl Lock {
    /// A lock on `path` (a directory; made as a container when first used).
    pub fn new(client: &Client, path: &str) -> Lock {
        Lock {
            client: client.clone(),
            dir: path.to_owned(),
            data: Vec::new(),
        }
    }

    /// Stores `data` in this contender's node (say, who it is), for [`Lock::contenders`].
    pub fn with_data(mut self, data: &[u8]) -> Lock {
        self.data = data.to_vec();
        self
    }

    /// Waits for the lock. Dropping the future while it waits gives up its place in line.
    pub async fn acquire(&self) -> Result<LockGuard, Error> {
        let guard = enter(
            &self.client,
            &self.dir,
            WRITE,
            &self.data,
            Rule::Exclusive,
            None,
        );
        guard
            .await?
            .ok_or(Error::Server(ErrorCode::OperationTimeout))
    }

    /// Waits for the lock at most `timeout`; None if it was not had by then.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Option<LockGuard>, Error> {
        let deadline = Some(Instant::now() + timeout);
        enter(
            &self.client,
            &self.dir,
            WRITE,
            &self.data,
            Rule::Exclusive,
            deadline,
        )
        .await
    }

    /// Takes the lock if nobody holds it or waits for it; None otherwise. It waits for the
    /// round trip that puts it in line (while the session is suspended, for the reconnect).
    pub async fn try_acquire(&self) -> Result<Option<LockGuard>, Error> {
        self.acquire_timeout(Duration::ZERO).await
    }

    /// The data of every contender's node, the holder first.
    pub async fn contenders(&self) -> Result<Vec<Vec<u8>>, Error> {
        contenders(&self.client, &self.dir).await
    }
}

/// A read-write lock: readers share it, a writer holds it alone; everyone is served in the
/// order asked, so a waiting writer is not starved by later readers. Curator's
/// `InterProcessReadWriteLock`.
#[derive(Clone)]
pub struct RwLock {
    client: Client,
    dir: String,
}

impl RwLock {
    pub fn new(client: &Client, path: &str) -> RwLock {
        RwLock {
            client: client.clone(),
            dir: path.to_owned(),
        }
    }

    /// Waits until no writer is ahead, then holds the lock with the other readers.
    pub async fn read(&self) -> Result<LockGuard, Error> {
        let guard = enter(&self.client, &self.dir, READ, b"", Rule::Shared, None);
        guard
            .await?
            .ok_or(Error::Server(ErrorCode::OperationTimeout))
    }

    /// Waits until nobody is ahead, then holds the lock alone.
    pub async fn write(&self) -> Result<LockGuard, Error> {
        let guard = enter(&self.client, &self.dir, WRITE, b"", Rule::Exclusive, None);
        guard
            .await?
            .ok_or(Error::Server(ErrorCode::OperationTimeout))
    }

    /// [`RwLock::read`], giving up after `timeout`.
    pub async fn read_timeout(&self, timeout: Duration) -> Result<Option<LockGuard>, Error> {
        let deadline = Some(Instant::now() + timeout);
        enter(&self.client, &self.dir, READ, b"", Rule::Shared, deadline).await
    }

    /// [`RwLock::write`], giving up after `timeout`.
    pub async fn write_timeout(&self, timeout: Duration) -> Result<Option<LockGuard>, Error> {
        let deadline = Some(Instant::now() + timeout);
        enter(
            &self.client,
            &self.dir,
            WRITE,
            b"",
            Rule::Exclusive,
            deadline,
        )
        .await
    }
}

/// A counting semaphore: at most `leases` holders at once, served in the order they asked.
/// Waiters watch the line itself (any holder's release may let them in), as Curator's
/// `InterProcessSemaphoreV2` does. Every client must name the same number of leases.
#[derive(Clone)]
pub struct Semaphore {
    client: Client,
    dir: String,
    leases: usize,
}

/// A lease of a [`Semaphore`].
pub type Lease = LockGuard;

impl Semaphore {
    pub fn new(client: &Client, path: &str, leases: usize) -> Semaphore {
        Semaphore {
            client: client.clone(),
            dir: path.to_owned(),
            leases: leases.max(1),
        }
    }

    /// Waits for a lease.
    pub async fn acquire(&self) -> Result<Lease, Error> {
        let rule = Rule::Window(self.leases);
        let lease = enter(&self.client, &self.dir, "lease-", b"", rule, None);
        lease
            .await?
            .ok_or(Error::Server(ErrorCode::OperationTimeout))
    }

    /// Waits for a lease at most `timeout`; None if none was had by then.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Result<Option<Lease>, Error> {
        let deadline = Some(Instant::now() + timeout);
        let rule = Rule::Window(self.leases);
        enter(&self.client, &self.dir, "lease-", b"", rule, deadline).await
    }
}

/// A held lock (or lease). [`LockGuard::release`] gives it up; dropping the guard does too, in
/// the background. The lock is held only while the session lives: see the module docs.
pub struct LockGuard {
    client: Client,
    /// None once released.
    path: Option<String>,
    /// Where a guard dropped unreleased deletes its node (the drop may happen off it).
    runtime: Handle,
}

impl LockGuard {
    /// The node that holds the lock.
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or("")
    }

    /// Gives the lock up, deleting its node.
    pub async fn release(mut self) -> Result<(), Error> {
        let Some(path) = self.path.take() else {
            return Ok(());
        };
        match retrying(|| self.client.delete(&path, -1)).await {
            Ok(()) | Err(Error::Server(ErrorCode::NoNode)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            delete_in_background(&self.runtime, self.client.clone(), path);
        }
    }
}

/// Joins the line in `dir` as a `name` node and waits, until `deadline` if any, for `rule` to
/// let it hold. Gives its place up when it stops waiting, for whatever reason.
pub(super) async fn enter(
    client: &Client,
    dir: &str,
    name: &str,
    data: &[u8],
    rule: Rule,
    deadline: Option<Instant>,
) -> Result<Option<LockGuard>, Error> {
    let runtime = current_runtime()?;
    let creating = Creating::start(&runtime, client, dir, name, data).finish();
    // The deadline bounds the create too (it waits in the session's queue while the session is
    // suspended); given up, the create cleans up after itself. A deadline already passed (a
    // try) still waits for the create's round trip.
    let path = match deadline.filter(|deadline| *deadline > Instant::now()) {
        Some(deadline) => match tokio::time::timeout_at(deadline, creating).await {
            Ok(created) => created?,
            Err(_) => return Ok(None),
        },
        None => creating.await?,
    };
    // Deletes the node if this future is dropped while it waits.
    let mut place = LockGuard {
        client: client.clone(),
        path: Some(path.clone()),
        runtime: runtime.clone(),
    };
    match wait_in_line(client, dir, &path, rule, deadline).await {
        Ok(true) => Ok(Some(place)),
        Ok(false) => place.release().await.map(|()| None),
        Err(e) => {
            // The node is gone with the session, or this client cannot act: nothing to keep.
            place.path = None;
            delete_in_background(&runtime, client.clone(), path);
            Err(e)
        }
    }
}

/// Waits until `rule` lets `ours` hold: true, or false at `deadline`.
async fn wait_in_line(
    client: &Client,
    dir: &str,
    ours: &str,
    rule: Rule,
    deadline: Option<Instant>,
) -> Result<bool, Error> {
    let own = name_of(ours);
    loop {
        let (children, line_changed) = match rule {
            Rule::Window(_) => {
                let (children, watch) = retrying(|| client.get_children_watch(dir)).await?;
                (children, Some(watch))
            }
            _ => (retrying(|| client.get_children(dir)).await?, None),
        };
        let line = by_sequence(children);
        let Some(place) = line.iter().position(|name| name == own) else {
            // Our node went: the session that owned it has expired.
            return Err(Error::SessionExpired);
        };
        let ahead = &line[..place];
        let blocker = match rule {
            Rule::Exclusive => ahead.last(),
            Rule::Shared => ahead.iter().rev().find(|name| is_writer(name)),
            Rule::Window(leases) => {
                if place < leases {
                    return Ok(true);
                }
                match line_changed {
                    Some(watch) => {
                        if !wait(watch, deadline).await? {
                            return Ok(false);
                        }
                    }
                    None => return Err(Error::Malformed("semaphore without a watch".into())),
                }
                continue;
            }
        };
        let Some(blocker) = blocker else {
            return Ok(true);
        };
        match client.get_data_watch(&join(dir, blocker)).await {
            Ok((_, _, gone)) => {
                if !wait(gone, deadline).await? {
                    return Ok(false);
                }
            }
            Err(Error::Server(ErrorCode::NoNode) | Error::ConnectionLoss) => {}
            Err(e) => return Err(e),
        }
    }
}

fn is_writer(name: &str) -> bool {
    name.contains(&format!("-{WRITE}"))
}

/// Waits for `watch`, until `deadline` if any: false if the deadline came first.
async fn wait(watch: Watch, deadline: Option<Instant>) -> Result<bool, Error> {
    let fired = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, watch).await {
            Ok(fired) => fired,
            Err(_) => return Ok(false),
        },
        None => watch.await,
    };
    match fired {
        Ok(_) | Err(Error::ConnectionLoss) => Ok(true),
        Err(e) => Err(e),
    }
}

/// The data of every node in `dir`'s line, first in line first.
pub(super) async fn contenders(client: &Client, dir: &str) -> Result<Vec<Vec<u8>>, Error> {
    let line = match retrying(|| client.get_children(dir)).await {
        Ok(children) => by_sequence(children),
        Err(Error::Server(ErrorCode::NoNode)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut data = Vec::with_capacity(line.len());
    for name in line {
        let node = join(dir, &name);
        match retrying(|| client.get_data(&node)).await {
            Ok((bytes, _)) => data.push(bytes),
            Err(Error::Server(ErrorCode::NoNode)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(data)
}
