//! The client's API: every operation of ZooKeeper 3.9, on paths relative to the chroot.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use coord_proto::{
    Acl, AddWatchMode, AuthPacket, ClientInfo, CreateMode, CreateRequest, ErrorCode, MultiOp,
    MultiResult, Request, Response, Stat, WatcherType,
};
use tokio::sync::oneshot;

use crate::session::{self, Arm, Call, Handles, SessionEvents, SessionState};
use crate::watches::{PersistentWatch, Watch, WatchKind};
use crate::{ConnectString, Error};

/// A session with a coord (or ZooKeeper) ensemble.
///
/// Clones share the session. It survives the loss of a connection: the client connects to
/// another server of the connection string and resumes the session there, with its watches and
/// credentials. Requests made meanwhile wait for the new connection; requests that were in
/// flight when it broke fail with [`Error::ConnectionLoss`] (they may or may not have happened).
/// [`Client::session_events`] reports the changes.
///
/// Dropping the last clone closes the session (its ephemerals go at once), as does
/// [`Client::close`].
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    session: Handles,
    connect: ConnectString,
}

impl Client {
    /// Connects to a server of `connect_string` (tried in a random order, as ZooKeeper's
    /// clients do) and opens a session with `session_timeout`; the server may clamp it (see
    /// [`Client::session_timeout`]). Fails if no server answers.
    pub async fn connect(connect_string: &str, session_timeout: Duration) -> Result<Client, Error> {
        let connect = ConnectString::parse(connect_string)?;
        let session = session::open(&connect, session_timeout).await?;
        Ok(Client {
            inner: Arc::new(Inner { session, connect }),
        })
    }

    /// The session's id, as the server named it.
    pub fn session_id(&self) -> i64 {
        self.inner.session.session_id
    }

    /// The session timeout the server granted.
    pub fn session_timeout(&self) -> Duration {
        self.inner.session.status.borrow().timeout
    }

    /// The server (`host:port`, as the connection string names it) the session is connected to
    /// now; None while it is between connections.
    pub fn server(&self) -> Option<String> {
        self.inner.session.status.borrow().server.clone()
    }

    /// Where the session stands now.
    pub fn state(&self) -> SessionState {
        self.inner.session.status.borrow().state
    }

    /// The session's changes of state from now on: `Suspended` when a connection breaks,
    /// `Connected` when another takes the session back, `Lost` or `Closed` at the end.
    pub fn session_events(&self) -> SessionEvents {
        self.inner.session.subscribe()
    }

    fn path(&self, path: &str) -> String {
        self.inner.connect.server_path(path)
    }

    async fn send(&self, request: Request, arm: Option<Arm>) -> Result<Response, Error> {
        let (reply, answer) = oneshot::channel();
        let call = Call {
            request,
            reply,
            arm,
        };
        let ended = || self.inner.session.status.borrow().state.end_error();
        self.inner
            .session
            .calls
            .send(call)
            .await
            .map_err(|_| ended())?;
        answer.await.unwrap_or_else(|_| Err(ended()))
    }

    async fn call(&self, request: Request) -> Result<Response, Error> {
        self.send(request, None).await
    }

    /// Sends `request`, arming a one-shot watch of `kind` on its node if it succeeds.
    async fn watched(&self, request: Request, kind: WatchKind) -> (Result<Response, Error>, Watch) {
        let (watch, fire) = Watch::new(self.inner.connect.clone());
        let result = self.send(request, Some(Arm::OneShot(kind, fire))).await;
        (result, watch)
    }

    fn create_request(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
    ) -> CreateRequest {
        CreateRequest {
            path: self.path(path),
            data: data.to_vec(),
            acl: acl.to_vec(),
            flags: mode.code(),
            ttl: None,
        }
    }

    /// Creates a node; returns its path (with its sequence number, for a sequential mode).
    /// For the TTL modes use [`Client::create_ttl`].
    pub async fn create(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
    ) -> Result<String, Error> {
        if mode.is_ttl() {
            return Err(Error::Server(ErrorCode::BadArguments));
        }
        let request = self.create_request(path, data, acl, mode);
        let request = if mode.is_container() {
            Request::CreateContainer(request)
        } else {
            Request::Create(request)
        };
        match self.call(request).await? {
            Response::Create { path } | Response::Create2 { path, .. } => {
                Ok(self.inner.connect.client_path(&path))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Creates a node; returns its path and its Stat (ZooKeeper's create2).
    pub async fn create2(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
    ) -> Result<(String, Stat), Error> {
        if mode.is_ttl() {
            return Err(Error::Server(ErrorCode::BadArguments));
        }
        let request = self.create_request(path, data, acl, mode);
        let request = if mode.is_container() {
            Request::CreateContainer(request)
        } else {
            Request::Create2(request)
        };
        self.created(request).await
    }

    /// Creates a node with a time to live (`mode` is [`CreateMode::PersistentWithTtl`] or
    /// [`CreateMode::PersistentSequentialWithTtl`]): the server deletes it once it has had no
    /// children and no change for `ttl`. The server must have TTL nodes enabled.
    pub async fn create_ttl(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
        ttl: Duration,
    ) -> Result<(String, Stat), Error> {
        if !mode.is_ttl() {
            return Err(Error::Server(ErrorCode::BadArguments));
        }
        let mut request = self.create_request(path, data, acl, mode);
        request.ttl = Some(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        self.created(Request::CreateTtl(request)).await
    }

    async fn created(&self, request: Request) -> Result<(String, Stat), Error> {
        match self.call(request).await? {
            Response::Create2 { path, stat } => Ok((self.inner.connect.client_path(&path), stat)),
            other => Err(unexpected(other)),
        }
    }

    /// A node's data and Stat.
    pub async fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat), Error> {
        let path = self.path(path);
        match self.call(Request::GetData { path, watch: false }).await? {
            Response::GetData { data, stat } => Ok((data.to_vec(), stat)),
            other => Err(unexpected(other)),
        }
    }

    /// A node's data and Stat, and a watch that fires when the data changes or the node goes.
    pub async fn get_data_watch(&self, path: &str) -> Result<(Vec<u8>, Stat, Watch), Error> {
        let request = Request::GetData {
            path: self.path(path),
            watch: true,
        };
        match self.watched(request, WatchKind::Data).await {
            (Ok(Response::GetData { data, stat }), watch) => Ok((data.to_vec(), stat, watch)),
            (Ok(other), _) => Err(unexpected(other)),
            (Err(e), _) => Err(e),
        }
    }

    /// Replaces a node's data if its version is `version` (-1: any); returns the new Stat.
    pub async fn set_data(&self, path: &str, data: &[u8], version: i32) -> Result<Stat, Error> {
        let request = Request::SetData {
            path: self.path(path),
            data: data.to_vec(),
            version,
        };
        match self.call(request).await? {
            Response::Stat(stat) => Ok(stat),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes a node if its version is `version` (-1: any).
    pub async fn delete(&self, path: &str, version: i32) -> Result<(), Error> {
        let path = self.path(path);
        match self.call(Request::Delete { path, version }).await? {
            Response::Empty => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// A node's Stat, or None if it does not exist.
    pub async fn exists(&self, path: &str) -> Result<Option<Stat>, Error> {
        let path = self.path(path);
        match self.call(Request::Exists { path, watch: false }).await {
            Ok(Response::Stat(stat)) => Ok(Some(stat)),
            Err(Error::Server(ErrorCode::NoNode)) => Ok(None),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e),
        }
    }

    /// A node's Stat (None if it does not exist), and a watch that fires when it is created,
    /// changed or deleted.
    pub async fn exists_watch(&self, path: &str) -> Result<(Option<Stat>, Watch), Error> {
        let request = Request::Exists {
            path: self.path(path),
            watch: true,
        };
        match self.watched(request, WatchKind::Exist).await {
            (Ok(Response::Stat(stat)), watch) => Ok((Some(stat), watch)),
            (Err(Error::Server(ErrorCode::NoNode)), watch) => Ok((None, watch)),
            (Ok(other), _) => Err(unexpected(other)),
            (Err(e), _) => Err(e),
        }
    }

    /// A node's children's names.
    pub async fn get_children(&self, path: &str) -> Result<Vec<String>, Error> {
        let path = self.path(path);
        match self
            .call(Request::GetChildren { path, watch: false })
            .await?
        {
            Response::GetChildren { children } => Ok(children),
            other => Err(unexpected(other)),
        }
    }

    /// A node's children's names and its Stat (ZooKeeper's getChildren2).
    pub async fn get_children2(&self, path: &str) -> Result<(Vec<String>, Stat), Error> {
        let path = self.path(path);
        match self
            .call(Request::GetChildren2 { path, watch: false })
            .await?
        {
            Response::GetChildren2 { children, stat } => Ok((children, stat)),
            other => Err(unexpected(other)),
        }
    }

    /// A node's children's names, and a watch that fires when they change or the node goes.
    pub async fn get_children_watch(&self, path: &str) -> Result<(Vec<String>, Watch), Error> {
        let request = Request::GetChildren {
            path: self.path(path),
            watch: true,
        };
        match self.watched(request, WatchKind::Child).await {
            (Ok(Response::GetChildren { children }), watch) => Ok((children, watch)),
            (Ok(other), _) => Err(unexpected(other)),
            (Err(e), _) => Err(e),
        }
    }

    /// How many nodes are below `path`, at any depth.
    pub async fn get_all_children_number(&self, path: &str) -> Result<i32, Error> {
        let path = self.path(path);
        match self.call(Request::GetAllChildrenNumber { path }).await? {
            Response::GetAllChildrenNumber { total } => Ok(total),
            other => Err(unexpected(other)),
        }
    }

    /// The paths of this session's ephemeral nodes that start with `prefix` ("/" for all).
    pub async fn get_ephemerals(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let prefix = self.path(prefix);
        match self.call(Request::GetEphemerals { prefix }).await? {
            Response::GetEphemerals { paths } => Ok(paths
                .iter()
                .map(|path| self.inner.connect.client_path(path))
                .collect()),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until the server this session is connected to has applied every write that was
    /// committed before (so the next read here sees them); returns the path.
    pub async fn sync(&self, path: &str) -> Result<String, Error> {
        let path = self.path(path);
        match self.call(Request::Sync { path }).await? {
            Response::Sync { path } => Ok(self.inner.connect.client_path(&path)),
            other => Err(unexpected(other)),
        }
    }

    /// A node's ACL and Stat.
    pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), Error> {
        let path = self.path(path);
        match self.call(Request::GetAcl { path }).await? {
            Response::GetAcl { acl, stat } => Ok((acl, stat)),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces a node's ACL if its ACL version is `version` (-1: any); returns the new Stat.
    pub async fn set_acl(&self, path: &str, acl: &[Acl], version: i32) -> Result<Stat, Error> {
        let request = Request::SetAcl {
            path: self.path(path),
            acl: acl.to_vec(),
            version,
        };
        match self.call(request).await? {
            Response::Stat(stat) => Ok(stat),
            other => Err(unexpected(other)),
        }
    }

    /// Adds credentials to the session (`"digest"` with `b"user:password"`, say). They are
    /// presented again on every later connection of the session. A scheme the server does not
    /// know fails with `AuthFailed`, and the server then drops the connection (the session
    /// reconnects without them).
    pub async fn add_auth(&self, scheme: &str, auth: &[u8]) -> Result<(), Error> {
        let packet = AuthPacket {
            auth_type: 0,
            scheme: scheme.to_owned(),
            auth: auth.to_vec(),
        };
        self.call(Request::Auth(packet)).await.map(drop)
    }

    /// The identities the session is authenticated as (ZooKeeper's whoAmI).
    pub async fn who_am_i(&self) -> Result<Vec<ClientInfo>, Error> {
        match self.call(Request::WhoAmI).await? {
            Response::WhoAmI { client_info } => Ok(client_info),
            other => Err(unexpected(other)),
        }
    }

    /// Runs `ops` as one transaction: all of them, or (with the first failure's error) none.
    pub async fn multi(&self, ops: &[Op]) -> Result<Vec<OpResult>, Error> {
        let ops = ops
            .iter()
            .map(|op| op.to_wire(&self.inner.connect))
            .collect();
        let results = match self.call(Request::Multi(ops)).await? {
            Response::Multi(results) => results,
            other => return Err(unexpected(other)),
        };
        // In a failed multi every result is an error: Ok for the ops before the culprit, its
        // own code, RuntimeInconsistency for the ops after it.
        if let Some(code) = results
            .iter()
            .filter_map(|r| match r {
                MultiResult::Error(code) => Some(*code),
                _ => None,
            })
            .find(|code| *code != 0 && *code != ErrorCode::RuntimeInconsistency.code())
        {
            return Err(server_error(code));
        }
        results
            .into_iter()
            .map(|result| match result {
                MultiResult::Create { path } | MultiResult::Create2 { path, .. } => {
                    Ok(OpResult::Create {
                        path: self.inner.connect.client_path(&path),
                    })
                }
                MultiResult::Delete => Ok(OpResult::Delete),
                MultiResult::SetData { stat } => Ok(OpResult::SetData { stat }),
                MultiResult::Check => Ok(OpResult::Check),
                other => Err(Error::Malformed(format!(
                    "unexpected multi result {other:?}"
                ))),
            })
            .collect()
    }

    /// Runs `ops` as one request (ZooKeeper's multiRead); each read succeeds or fails alone.
    pub async fn multi_read(
        &self,
        ops: &[ReadOp],
    ) -> Result<Vec<Result<ReadResult, Error>>, Error> {
        let ops = ops
            .iter()
            .map(|op| match op {
                ReadOp::GetData { path } => MultiOp::GetData {
                    path: self.path(path),
                },
                ReadOp::GetChildren { path } => MultiOp::GetChildren {
                    path: self.path(path),
                },
            })
            .collect();
        let results = match self.call(Request::MultiRead(ops)).await? {
            Response::Multi(results) => results,
            other => return Err(unexpected(other)),
        };
        Ok(results
            .into_iter()
            .map(|result| match result {
                MultiResult::GetData { data, stat } => Ok(ReadResult::Data { data, stat }),
                MultiResult::GetChildren { children } => Ok(ReadResult::Children { children }),
                MultiResult::Error(code) => Err(server_error(code)),
                other => Err(Error::Malformed(format!(
                    "unexpected multiRead result {other:?}"
                ))),
            })
            .collect())
    }

    /// A persistent watch on `path` (or, with [`AddWatchMode::PersistentRecursive`], on every
    /// node under it too): unlike a one-shot watch it stays set, and reports every change in
    /// order until it is dropped. A recursive watch does not report child list changes (the
    /// children's own creations and deletions say it).
    pub async fn add_watch(
        &self,
        path: &str,
        mode: AddWatchMode,
    ) -> Result<PersistentWatch, Error> {
        let (watch, queue) = PersistentWatch::new(self.inner.connect.clone());
        let request = Request::AddWatch {
            path: self.path(path),
            mode,
        };
        match self
            .send(request, Some(Arm::Persistent(mode, queue)))
            .await?
        {
            Response::AddWatch | Response::Empty => Ok(watch),
            other => Err(unexpected(other)),
        }
    }

    /// Removes this session's watches of `watcher_type` on `path`; each hears that it was
    /// removed (a `DataWatchRemoved`, `ChildWatchRemoved` or `PersistentWatchRemoved` event).
    /// Fails with `NoWatcher` if there was none.
    pub async fn remove_watches(&self, path: &str, watcher_type: WatcherType) -> Result<(), Error> {
        let request = Request::RemoveWatches {
            path: self.path(path),
            watcher_type,
        };
        self.send(request, Some(Arm::Remove(watcher_type)))
            .await
            .map(drop)
    }

    /// Ends the session: its ephemeral nodes go at once. Other clones of this client then fail
    /// with [`Error::Closed`].
    pub async fn close(self) -> Result<(), Error> {
        match self.call(Request::CloseSession).await {
            Ok(_) | Err(Error::ConnectionLoss | Error::Closed | Error::SessionExpired) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// One operation of a [`Client::multi`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Create {
        path: String,
        data: Vec<u8>,
        acl: Vec<Acl>,
        mode: CreateMode,
    },
    Delete {
        path: String,
        version: i32,
    },
    SetData {
        path: String,
        data: Vec<u8>,
        version: i32,
    },
    /// Fails the transaction unless the node's version is `version`.
    Check {
        path: String,
        version: i32,
    },
}

impl Op {
    fn to_wire(&self, connect: &ConnectString) -> MultiOp {
        match self {
            Op::Create {
                path,
                data,
                acl,
                mode,
            } => {
                let request = CreateRequest {
                    path: connect.server_path(path),
                    data: data.clone(),
                    acl: acl.clone(),
                    flags: mode.code(),
                    ttl: None,
                };
                if mode.is_container() {
                    MultiOp::CreateContainer(request)
                } else {
                    MultiOp::Create(request)
                }
            }
            Op::Delete { path, version } => MultiOp::Delete {
                path: connect.server_path(path),
                version: *version,
            },
            Op::SetData {
                path,
                data,
                version,
            } => MultiOp::SetData {
                path: connect.server_path(path),
                data: data.clone(),
                version: *version,
            },
            Op::Check { path, version } => MultiOp::Check {
                path: connect.server_path(path),
                version: *version,
            },
        }
    }
}

/// What one operation of a successful [`Client::multi`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    Create { path: String },
    Delete,
    SetData { stat: Stat },
    Check,
}

/// One read of a [`Client::multi_read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOp {
    GetData { path: String },
    GetChildren { path: String },
}

/// What one read of a [`Client::multi_read`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadResult {
    Data { data: Bytes, stat: Stat },
    Children { children: Vec<String> },
}

fn unexpected(response: Response) -> Error {
    Error::Malformed(format!("unexpected reply {response:?}"))
}

fn server_error(code: i32) -> Error {
    ErrorCode::from_code(code).map_or_else(
        || Error::Malformed(format!("error code {code}")),
        Error::Server,
    )
}
