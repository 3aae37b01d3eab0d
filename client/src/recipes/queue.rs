//! A FIFO queue of byte strings: persistent sequential nodes, taken in sequence order.

use std::time::Duration;

use tokio::time::Instant;

use super::{by_sequence, ensure_path, join, retrying};
use crate::{Acl, Client, CreateMode, Error, ErrorCode};

/// A queue every client naming the same path shares (the ZooKeeper recipe; Curator's
/// `SimpleDistributedQueue`, kazoo's `Queue`). An item is taken by whoever deletes its node,
/// so each is taken once. An item whose delete was cut off by a lost connection may be lost
/// to every taker (the delete may have happened): the queue gives each item at most once.
#[derive(Clone)]
pub struct Queue {
    client: Client,
    path: String,
}

impl Queue {
    pub fn new(client: &Client, path: &str) -> Queue {
        Queue {
            client: client.clone(),
            path: path.to_owned(),
        }
    }

    /// Appends an item. A lost connection is an error: the item may or may not be in.
    pub async fn put(&self, item: &[u8]) -> Result<(), Error> {
        ensure_path(&self.client, &self.path, CreateMode::Persistent).await?;
        let entry = join(&self.path, "entry-");
        let open = Acl::open_unsafe();
        self.client
            .create(&entry, item, &open, CreateMode::PersistentSequential)
            .await
            .map(drop)
    }

    /// Takes the first item, if there is one.
    pub async fn try_take(&self) -> Result<Option<Vec<u8>>, Error> {
        match retrying(|| self.client.get_children(&self.path)).await {
            Ok(children) => self.take_first(children).await,
            Err(Error::Server(ErrorCode::NoNode)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes the first item, waiting for one if the queue is empty. Not cancel-safe: an item
    /// whose delete is on its way when this future is dropped is lost; to wait a bounded time,
    /// use [`Queue::take_timeout`].
    pub async fn take(&self) -> Result<Vec<u8>, Error> {
        match self.take_until(None).await? {
            Some(item) => Ok(item),
            None => Err(Error::Server(ErrorCode::OperationTimeout)),
        }
    }

    /// Takes the first item, waiting at most `timeout` for one; None if none came.
    pub async fn take_timeout(&self, timeout: Duration) -> Result<Option<Vec<u8>>, Error> {
        self.take_until(Some(Instant::now() + timeout)).await
    }

    /// Only the wait for an item is bounded by `deadline`: a take under way finishes.
    async fn take_until(&self, deadline: Option<Instant>) -> Result<Option<Vec<u8>>, Error> {
        ensure_path(&self.client, &self.path, CreateMode::Persistent).await?;
        loop {
            let (children, changed) =
                retrying(|| self.client.get_children_watch(&self.path)).await?;
            if let Some(item) = self.take_first(children).await? {
                return Ok(Some(item));
            }
            let fired = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, changed).await {
                    Ok(fired) => fired,
                    Err(_) => return Ok(None),
                },
                None => changed.await,
            };
            match fired {
                Ok(_) | Err(Error::ConnectionLoss) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// How many items are waiting.
    pub async fn len(&self) -> Result<usize, Error> {
        match retrying(|| self.client.get_children(&self.path)).await {
            Ok(children) => Ok(children.len()),
            Err(Error::Server(ErrorCode::NoNode)) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Whether no item is waiting.
    pub async fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len().await? == 0)
    }

    /// Takes the first of `children` nobody else takes first.
    async fn take_first(&self, children: Vec<String>) -> Result<Option<Vec<u8>>, Error> {
        for name in by_sequence(children) {
            let node = join(&self.path, &name);
            let data = match retrying(|| self.client.get_data(&node)).await {
                Ok((data, _)) => data,
                Err(Error::Server(ErrorCode::NoNode)) => continue,
                Err(e) => return Err(e),
            };
            match self.client.delete(&node, -1).await {
                Ok(()) => return Ok(Some(data)),
                Err(Error::Server(ErrorCode::NoNode) | Error::ConnectionLoss) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}
