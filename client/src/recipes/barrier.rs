//! Barriers: a node whose existence holds clients back, and a double barrier that starts and
//! ends a computation among a known number of clients.

use super::{ensure_path, join, retrying};
use crate::{Acl, Client, CreateMode, Error, ErrorCode};

/// A barrier: while its node exists, [`Barrier::wait`] waits. As kazoo's `Barrier`.
#[derive(Clone)]
pub struct Barrier {
    client: Client,
    path: String,
}

impl Barrier {
    pub fn new(client: &Client, path: &str) -> Barrier {
        Barrier {
            client: client.clone(),
            path: path.to_owned(),
        }
    }

    /// Raises the barrier (creates its node; raised already is fine).
    pub async fn raise(&self) -> Result<(), Error> {
        let parent = match self.path.rfind('/') {
            Some(0) | None => "/",
            Some(at) => &self.path[..at],
        };
        ensure_path(&self.client, parent, CreateMode::Persistent).await?;
        let open = Acl::open_unsafe();
        match retrying(|| {
            self.client
                .create(&self.path, b"", &open, CreateMode::Persistent)
        })
        .await
        {
            Ok(_) | Err(Error::Server(ErrorCode::NodeExists)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Lowers the barrier: every waiter goes on.
    pub async fn remove(&self) -> Result<(), Error> {
        match retrying(|| self.client.delete(&self.path, -1)).await {
            Ok(()) | Err(Error::Server(ErrorCode::NoNode)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits until the barrier is down (at once if it is not raised).
    pub async fn wait(&self) -> Result<(), Error> {
        loop {
            let (stat, watch) = retrying(|| self.client.exists_watch(&self.path)).await?;
            if stat.is_none() {
                return Ok(());
            }
            match watch.await {
                Ok(_) | Err(Error::ConnectionLoss) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A double barrier (the ZooKeeper recipe, kazoo's `DoubleBarrier`): [`DoubleBarrier::enter`]
/// waits until `count` clients have entered, [`DoubleBarrier::leave`] until all of them have
/// left. Each client is an ephemeral node under the barrier's path, named `name`.
#[derive(Clone)]
pub struct DoubleBarrier {
    client: Client,
    path: String,
    count: usize,
    name: String,
}

/// The node that says enough clients have entered.
const READY: &str = "ready";

impl DoubleBarrier {
    /// A double barrier on `path` for `count` clients; `name` must be unique among them.
    pub fn new(client: &Client, path: &str, count: usize, name: &str) -> DoubleBarrier {
        DoubleBarrier {
            client: client.clone(),
            path: path.to_owned(),
            count,
            name: name.to_owned(),
        }
    }

    fn node(&self) -> String {
        join(&self.path, &self.name)
    }

    fn ready(&self) -> String {
        join(&self.path, READY)
    }

    /// Enters, and waits until `count` clients have.
    pub async fn enter(&self) -> Result<(), Error> {
        ensure_path(&self.client, &self.path, CreateMode::Persistent).await?;
        let open = Acl::open_unsafe();
        let node = self.node();
        let ready = self.ready();
        // Watch for the ready node before entering, so the last one's signal is not missed.
        let (already, mut watch) = retrying(|| self.client.exists_watch(&ready)).await?;
        match retrying(|| self.client.create(&node, b"", &open, CreateMode::Ephemeral)).await {
            Ok(_) | Err(Error::Server(ErrorCode::NodeExists)) => {}
            Err(e) => return Err(e),
        }
        if already.is_some() {
            return Ok(());
        }
        loop {
            let children = retrying(|| self.client.get_children(&self.path)).await?;
            let entered = children.iter().filter(|c| c.as_str() != READY).count();
            if entered >= self.count {
                return match retrying(|| {
                    self.client
                        .create(&ready, b"", &open, CreateMode::Persistent)
                })
                .await
                {
                    Ok(_) | Err(Error::Server(ErrorCode::NodeExists)) => Ok(()),
                    Err(e) => Err(e),
                };
            }
            match watch.await {
                Ok(_) => return Ok(()),
                Err(Error::ConnectionLoss) => {
                    let (exists, again) = retrying(|| self.client.exists_watch(&ready)).await?;
                    if exists.is_some() {
                        return Ok(());
                    }
                    watch = again;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Leaves, and waits until every client has. The lowest-named client leaves last, each
    /// other one waits for it; it waits for the highest, so nobody is woken in a herd.
    pub async fn leave(&self) -> Result<(), Error> {
        let node = self.node();
        loop {
            let mut children = retrying(|| self.client.get_children(&self.path)).await?;
            children.retain(|c| c != READY);
            children.sort();
            if children.is_empty() {
                // The last to go takes the ready node with it, for the next round.
                let ready = self.ready();
                return match retrying(|| self.client.delete(&ready, -1)).await {
                    Ok(()) | Err(Error::Server(ErrorCode::NoNode)) => Ok(()),
                    Err(e) => Err(e),
                };
            }
            let mine = children.contains(&self.name);
            if mine && children.len() == 1 {
                self.delete(&node).await?;
                continue;
            }
            let lowest = &children[0];
            let wait_on = if *lowest == self.name {
                children.last().map(String::as_str).unwrap_or(lowest)
            } else {
                if mine {
                    self.delete(&node).await?;
                }
                lowest
            };
            let (exists, watch) = {
                let wait_on = join(&self.path, wait_on);
                retrying(|| self.client.exists_watch(&wait_on)).await?
            };
            if exists.is_some() {
                match watch.await {
                    Ok(_) | Err(Error::ConnectionLoss) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    async fn delete(&self, node: &str) -> Result<(), Error> {
        match retrying(|| self.client.delete(node, -1)).await {
            Ok(()) | Err(Error::Server(ErrorCode::NoNode)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
