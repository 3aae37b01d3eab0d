//! Leader election: contenders line up as in a [`super::Lock`]; the first in line leads until
//! it resigns or its session falters.

use super::lock::{contenders, enter, Rule};
use super::LockGuard;
use crate::{Client, Error, ErrorCode, EventType, SessionState};

/// An election among every client that names the same path, as Curator's `LeaderLatch`:
/// contenders are served in the order they joined, each watching only the one ahead of it.
#[derive(Clone)]
pub struct Election {
    client: Client,
    dir: String,
    identifier: Vec<u8>,
}

impl Election {
    /// An election on `path`; `identifier` is stored in this contender's node, for
    /// [`Election::leader`].
    pub fn new(client: &Client, path: &str, identifier: &[u8]) -> Election {
        Election {
            client: client.clone(),
            dir: path.to_owned(),
            identifier: identifier.to_vec(),
        }
    }

    /// Joins the election and waits to lead. Dropping the future while it waits withdraws.
    pub async fn campaign(&self) -> Result<Leadership, Error> {
        let entered = enter(
            &self.client,
            &self.dir,
            "leader-",
            &self.identifier,
            Rule::Exclusive,
            None,
        );
        let guard = entered
            .await?
            .ok_or(Error::Server(ErrorCode::OperationTimeout))?;
        // Changes from here on are news to the leader; one before is seen through state().
        let events = self.client.session_events();
        Ok(Leadership {
            client: self.client.clone(),
            guard,
            events,
        })
    }

    /// The identifier of the current leader, if there is one.
    pub async fn leader(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.contenders().await?.into_iter().next())
    }

    /// The identifiers of every contender, the leader first.
    pub async fn contenders(&self) -> Result<Vec<Vec<u8>>, Error> {
        contenders(&self.client, &self.dir).await
    }
}

/// Being the leader. It lasts until [`Leadership::resign`] (or the value is dropped), and is
/// lost as soon as the session is not surely alive: see [`Leadership::lost`].
pub struct Leadership {
    client: Client,
    guard: LockGuard,
    events: crate::SessionEvents,
}

impl Leadership {
    /// The node that holds the leadership.
    pub fn path(&self) -> &str {
        self.guard.path()
    }

    /// Resolves when the leadership is lost, or may be: the connection broke (`Suspended`:
    /// another contender may lead once the session expires, and this one cannot tell when that
    /// is, so it must stop acting as leader now, as Curator's `LeaderLatch` does), the session
    /// ended, or the node was deleted. Resign afterwards and campaign again to lead again.
    pub async fn lost(&mut self) {
        loop {
            if self.client.state() != SessionState::Connected {
                return;
            }
            let watch = match self.client.get_data_watch(self.guard.path()).await {
                Ok((_, _, watch)) => watch,
                Err(_) => return,
            };
            tokio::select! {
                event = self.events.next() => match event {
                    Some(SessionState::Connected) => {}
                    _ => return,
                },
                fired = watch => match fired {
                    Ok(event) if event.event_type != EventType::NodeDeleted => {}
                    _ => return,
                },
            }
        }
    }

    /// Gives the leadership up: the next contender leads.
    pub async fn resign(self) -> Result<(), Error> {
        self.guard.release().await
    }
}
