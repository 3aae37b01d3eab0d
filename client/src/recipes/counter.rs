//! A shared integer, changed by compare-and-set on its node's version.

use super::{ensure_path, retrying};
use crate::{Acl, Client, CreateMode, Error, ErrorCode};

/// A counter every client naming the same path shares, as kazoo's `Counter`: the value is
/// stored as decimal text (what kazoo stores for an int), 0 while the node does not exist.
#[derive(Clone)]
pub struct Counter {
    client: Client,
    path: String,
}

impl Counter {
    pub fn new(client: &Client, path: &str) -> Counter {
        Counter {
            client: client.clone(),
            path: path.to_owned(),
        }
    }

    /// The current value.
    pub async fn get(&self) -> Result<i64, Error> {
        match retrying(|| self.client.get_data(&self.path)).await {
            Ok((data, _)) => parse(&data),
            Err(Error::Server(ErrorCode::NoNode)) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Adds `delta` (which may be negative) and returns the new value. Retries while other
    /// clients change the value in between. A connection lost while the change was on its way
    /// is an error: the change may or may not have happened.
    pub async fn add(&self, delta: i64) -> Result<i64, Error> {
        loop {
            let current = match retrying(|| self.client.get_data(&self.path)).await {
                Ok((data, stat)) => Some((parse(&data)?, stat.version)),
                Err(Error::Server(ErrorCode::NoNode)) => None,
                Err(e) => return Err(e),
            };
            let value = current.map_or(0, |(value, _)| value);
            let next = value
                .checked_add(delta)
                .ok_or(Error::Server(ErrorCode::BadArguments))?;
            let text = next.to_string();
            let written = match current {
                Some((_, version)) => self
                    .client
                    .set_data(&self.path, text.as_bytes(), version)
                    .await
                    .map(drop),
                None => {
                    let parent = match self.path.rfind('/') {
                        Some(0) | None => "/",
                        Some(at) => &self.path[..at],
                    };
                    ensure_path(&self.client, parent, CreateMode::Persistent).await?;
                    let open = Acl::open_unsafe();
                    self.client
                        .create(&self.path, text.as_bytes(), &open, CreateMode::Persistent)
                        .await
                        .map(drop)
                }
            };
            match written {
                Ok(()) => return Ok(next),
                Err(Error::Server(
                    ErrorCode::BadVersion | ErrorCode::NodeExists | ErrorCode::NoNode,
                )) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn parse(data: &[u8]) -> Result<i64, Error> {
    if data.is_empty() {
        return Ok(0);
    }
    std::str::from_utf8(data)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| {
            Error::Malformed(format!(
                "counter value {:?} is not an integer",
                String::from_utf8_lossy(data)
            ))
        })
}
