//! Coordination recipes on a [`Client`], with the semantics users know from Curator and kazoo.
//!
//! - [`Lock`]: a mutex without herd effect: each waiter watches only the node just before its
//!   own. [`RwLock`] and [`Semaphore`] work the same way.
//! - [`Election`]: leader election, with a [`Leadership`] that says when it is lost.
//! - [`Barrier`] and [`DoubleBarrier`].
//! - [`Counter`]: an integer changed by compare-and-set.
//! - [`Queue`]: a FIFO of byte strings.
//!
//! The ephemeral sequential nodes the lock-like recipes create are *protected*, as Curator's:
//! their names start with `_c_` and a random token. A create whose reply is lost with the
//! connection is then found among the children after the reconnect, not made twice (a twin
//! would hold a place in line forever).
//!
//! Every recipe acts through its client's session: while the session is `Suspended`, a lock
//! holder or a leader cannot know whether it still holds its node. [`Leadership::lost`] says so
//! for elections; lock holders that care watch [`Client::session_events`].

mod barrier;
mod counter;
mod election;
mod lock;
mod queue;

pub use barrier::{Barrier, DoubleBarrier};
pub use counter::Counter;
pub use election::{Election, Leadership};
pub use lock::{Lease, Lock, LockGuard, RwLock, Semaphore};
pub use queue::Queue;

use rand::Rng;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::{Acl, Client, CreateMode, Error, ErrorCode};

/// Runs `op` again while it fails with `ConnectionLoss`. Only for operations that are safe to
/// repeat. The session queues requests while it reconnects, so a retry waits for the next
/// connection; it ends when the session does.
async fn retrying<T, F, Fut>(mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    loop {
        match op().await {
            Err(Error::ConnectionLoss) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

/// Creates `path` and any missing parent as `mode` nodes (containers for recipes' own
/// directories, so the server removes them once empty). Existing nodes are fine.
async fn ensure_path(client: &Client, path: &str, mode: CreateMode) -> Result<(), Error> {
    if path == "/" || retrying(|| client.exists(path)).await?.is_some() {
        return Ok(());
    }
    let mut at = 0;
    while let Some(next) = path[at + 1..].find('/').map(|i| i + at + 1) {
        create_if_missing(client, &path[..next], mode).await?;
        at = next;
    }
    create_if_missing(client, path, mode).await
}

async fn create_if_missing(client: &Client, path: &str, mode: CreateMode) -> Result<(), Error> {
    let open = Acl::open_unsafe();
    match retrying(|| client.create(path, b"", &open, mode)).await {
        Ok(_) | Err(Error::Server(ErrorCode::NodeExists)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A random token for protected names: 128 bits, as hex.
fn token() -> String {
    format!("{:032x}", rand::thread_rng().gen::<u128>())
}

/// Creates an ephemeral sequential node `{dir}/_c_{token}-{name}`; returns its path. A create
/// lost with the connection is looked for among `dir`'s children, by its token, before it is
/// tried again.
async fn create_protected(
    client: &Client,
    dir: &str,
    name: &str,
    data: &[u8],
) -> Result<String, Error> {
    ensure_path(client, dir, CreateMode::Container).await?;
    let prefix = format!("_c_{}-", token());
    let path = format!("{}/{prefix}{name}", dir.trim_end_matches('/'));
    loop {
        match client
            .create(
                &path,
                data,
                &Acl::open_unsafe(),
                CreateMode::EphemeralSequential,
            )
            .await
        {
            Ok(created) => return Ok(created),
            Err(Error::ConnectionLoss) => {}
            // The container went away between ensure_path and create: make it again.
            Err(Error::Server(ErrorCode::NoNode)) => {
                ensure_path(client, dir, CreateMode::Container).await?;
                continue;
            }
            Err(e) => return Err(e),
        }
        let children = retrying(|| client.get_children(dir)).await?;
        if let Some(found) = children.iter().find(|child| child.starts_with(&prefix)) {
            return Ok(join(dir, found));
        }
    }
}

/// `dir/name`.
fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

/// The sequence number a sequential node's name ends with (ten digits).
fn sequence(name: &str) -> Option<u64> {
    let digits = name.get(name.len().checked_sub(10)?..)?;
    digits.parse().ok()
}

/// `names` in the order of their sequence numbers; names without one come last.
fn by_sequence(mut names: Vec<String>) -> Vec<String> {
    names.sort_by_key(|name| (sequence(name).unwrap_or(u64::MAX), name.clone()));
    names
}

/// The name of a node, the last component of its path.
fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Deletes `path` in the background, on `runtime`: for a guard or a candidate dropped without
/// being released (a waiter that gave up, a holder that returned early), so that nobody waits
/// on its node until the session ends.
fn delete_in_background(runtime: &Handle, client: Client, path: String) {
    runtime.spawn(async move {
        let _ = retrying(|| client.delete(&path, -1)).await;
    });
}

/// The runtime a recipe runs on, for the work its values do when dropped.
fn current_runtime() -> Result<Handle, Error> {
    Handle::try_current().map_err(|_| Error::Malformed("recipes run on a tokio runtime".into()))
}

/// A protected create, run as a task of its own: a caller that gives up while it is on its way
/// (a timeout, a dropped future; the request may sit in the session's queue until a reconnect)
/// would otherwise leave a node in line that nobody deletes. Dropped before it is finished, it
/// deletes the node once the create is done.
struct Creating {
    runtime: Handle,
    client: Client,
    task: Option<JoinHandle<Result<String, Error>>>,
}

impl Creating {
    fn start(runtime: &Handle, client: &Client, dir: &str, name: &str, data: &[u8]) -> Creating {
        let (c, dir, name, data) = (
            client.clone(),
            dir.to_owned(),
            name.to_owned(),
            data.to_vec(),
        );
        let task = runtime.spawn(async move { create_protected(&c, &dir, &name, &data).await });
        Creating {
            runtime: runtime.clone(),
            client: client.clone(),
            task: Some(task),
        }
    }

    /// The created node's path.
    async fn finish(mut self) -> Result<String, Error> {
        let Some(task) = self.task.as_mut() else {
            return Err(Error::ConnectionLoss);
        };
        let created = task.await;
        self.task = None;
        created.unwrap_or(Err(Error::ConnectionLoss))
    }
}

impl Drop for Creating {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            let client = self.client.clone();
            self.runtime.spawn(async move {
                if let Ok(Ok(path)) = task.await {
                    let _ = retrying(|| client.delete(&path, -1)).await;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_sort_by_their_sequence_whatever_their_prefix() {
        let names = vec![
            "_c_bb-lock-0000000002".to_owned(),
            "_c_aa-lock-0000000010".to_owned(),
            "_c_cc-lock-0000000001".to_owned(),
            "ready".to_owned(),
        ];
        assert_eq!(
            by_sequence(names),
            [
                "_c_cc-lock-0000000001",
                "_c_bb-lock-0000000002",
                "_c_aa-lock-0000000010",
                "ready"
            ]
        );
        assert_eq!(sequence("x"), None);
        assert_eq!(name_of("/a/b/c"), "c");
    }
}
