//! `coord_client`: a session, driven by its own tokio runtime; every call blocks its caller
//! until the answer, and may come from any thread.

use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ::coord_client::{Acl, AddWatchMode, Client, CreateMode, Error, Id, Op, Stat, WatchedEvent};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use crate::panic::{guard, guard_void};
use crate::ptr::{self, Context};
use crate::result::coord_result;

/// Watch events waiting for the event thread at most; past it, the tasks that deliver them
/// wait (they hold nothing else up).
const EVENTS_QUEUED_MAX: usize = 1024;
/// How long `coord_client_free` waits for the server to confirm the session's close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What the recipes' handles share with their client: the runtime outlives every handle
/// that may still use it.
pub(crate) struct Core {
    pub runtime: Runtime,
    pub client: Client,
}

impl Core {
    pub fn block_on<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, coord_result> {
        self.runtime.block_on(call).map_err(coord_result::from)
    }
}

/// A session with coord or ZooKeeper. Opaque; made by `coord_client_open`, freed by
/// `coord_client_free`. Its functions may be called from several threads at once.
pub struct coord_client {
    pub(crate) core: Arc<Core>,
    events: mpsc::Sender<Message>,
    event_thread: Option<JoinHandle<()>>,
    /// Set by `coord_client_free`: the event thread calls no callback after it.
    stopped: Arc<AtomicBool>,
}

/// A node's metadata (ZooKeeper's Stat).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct coord_stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

impl From<Stat> for coord_stat {
    fn from(s: Stat) -> coord_stat {
        coord_stat {
            czxid: s.czxid,
            mzxid: s.mzxid,
            ctime: s.ctime,
            mtime: s.mtime,
            version: s.version,
            cversion: s.cversion,
            aversion: s.aversion,
            ephemeral_owner: s.ephemeral_owner,
            data_length: s.data_length,
            num_children: s.num_children,
            pzxid: s.pzxid,
        }
    }
}

/// How a node is created; the values are ZooKeeper's.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum coord_create_mode {
    COORD_PERSISTENT = 0,
    COORD_EPHEMERAL = 1,
    COORD_PERSISTENT_SEQUENTIAL = 2,
    COORD_EPHEMERAL_SEQUENTIAL = 3,
    COORD_CONTAINER = 4,
    COORD_PERSISTENT_WITH_TTL = 5,
    COORD_PERSISTENT_SEQUENTIAL_WITH_TTL = 6,
}

/// A create mode as C passes it: C enums are plain integers, and a value that names no mode is
/// an error, not a mode.
fn create_mode(mode: u32) -> Result<CreateMode, coord_result> {
    let mode = i32::try_from(mode).map_err(|_| coord_result::COORD_BAD_ARGUMENTS)?;
    CreateMode::from_code(mode).ok_or(coord_result::COORD_BAD_ARGUMENTS)
}

impl From<coord_create_mode> for CreateMode {
    fn from(mode: coord_create_mode) -> CreateMode {
        match mode {
            coord_create_mode::COORD_PERSISTENT => CreateMode::Persistent,
            coord_create_mode::COORD_EPHEMERAL => CreateMode::Ephemeral,
            coord_create_mode::COORD_PERSISTENT_SEQUENTIAL => CreateMode::PersistentSequential,
            coord_create_mode::COORD_EPHEMERAL_SEQUENTIAL => CreateMode::EphemeralSequential,
            coord_create_mode::COORD_CONTAINER => CreateMode::Container,
            coord_create_mode::COORD_PERSISTENT_WITH_TTL => CreateMode::PersistentWithTtl,
            coord_create_mode::COORD_PERSISTENT_SEQUENTIAL_WITH_TTL => {
                CreateMode::PersistentSequentialWithTtl
            }
        }
    }
}

/// One ACL entry. As an argument its strings are the caller's; in a `coord_acl_list` they are
/// the list's.
#[repr(C)]
#[derive(Debug)]
pub struct coord_acl {
    /// `COORD_PERM_*` bits.
    pub perms: u32,
    pub scheme: *const c_char,
    pub id: *const c_char,
}

/// A node's ACL, owned by libcoord: free with `coord_acl_list_free`.
#[repr(C)]
#[derive(Debug)]
pub struct coord_acl_list {
    pub acls: *mut coord_acl,
    pub len: usize,
}

/// A list of strings (children's names), owned by libcoord: free with
/// `coord_string_list_free`.
#[repr(C)]
#[derive(Debug)]
pub struct coord_string_list {
    pub items: *mut *mut c_char,
    pub len: usize,
}

/// What a watch saw. `path` is valid only during the callback.
#[repr(C)]
#[derive(Debug)]
pub struct coord_event {
    /// ZooKeeper's event type: 1 created, 2 deleted, 3 data changed, 4 children changed,
    /// 5/6/7 a data/child/persistent watch removed; -1 when `result` is not `COORD_OK`.
    pub event_type: i32,
    pub path: *const c_char,
    /// `COORD_OK`, or why the watch ended without an event (`COORD_SESSION_EXPIRED`,
    /// `COORD_CLOSED`).
    pub result: coord_result,
}

/// A watch callback: called on the client's event thread (named `coord-events`), one call at
/// a time, never on a thread of the caller's. It may call libcoord, and must not unwind (a C++
/// exception) into it.
pub type coord_watch_fn =
    Option<unsafe extern "C" fn(context: *mut c_void, event: *const coord_event)>;

/// What the event thread is given to do.
enum Message {
    /// Call a watch's callback.
    Deliver(Delivery),
    /// The client is being freed.
    Stop,
}

/// A fired watch on its way to the event thread.
struct Delivery {
    callback: unsafe extern "C" fn(*mut c_void, *const coord_event),
    context: Context,
    event: Result<WatchedEvent, Error>,
}

thread_local! {
    /// Set on each client's event thread: `coord_client_free` called from a callback must not
    /// wait for the thread it runs on.
    static ON_EVENT_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn run_event_thread(mut events: mpsc::Receiver<Message>, stopped: Arc<AtomicBool>) {
    ON_EVENT_THREAD.with(|on| on.set(true));
    while let Some(Message::Deliver(delivery)) = events.blocking_recv() {
        if stopped.load(Ordering::Acquire) {
            return;
        }
        let (event_type, path, result) = match delivery.event {
            Ok(event) => (event.event_type.code(), event.path, coord_result::COORD_OK),
            Err(e) => (-1, String::new(), coord_result::from(e)),
        };
        let path = CString::new(path).unwrap_or_default();
        let event = coord_event {
            event_type,
            path: path.as_ptr(),
            result,
        };
        ptr::call(delivery.callback, delivery.context, &event);
    }
}

/// Opens a session on a server of `connect_string` ("host:port[,host:port...][/chroot]") with
/// `session_timeout_ms`, and writes the new handle to `*out`. On failure `*out` is untouched.
#[no_mangle]
pub extern "C" fn coord_client_open(
    connect_string: *const c_char,
    session_timeout_ms: u32,
    out: *mut *mut coord_client,
) -> coord_result {
    guard(|| {
        let connect = ptr::str_arg(connect_string)?;
        ptr::check_out(out)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("coord-client")
            .enable_all()
            .build()
            .map_err(|_| coord_result::COORD_IO)?;
        let timeout = Duration::from_millis(u64::from(session_timeout_ms));
        let client = runtime
            .block_on(Client::connect(connect, timeout))
            .map_err(coord_result::from)?;
        let (events, receiver) = mpsc::channel(EVENTS_QUEUED_MAX);
        let stopped = Arc::new(AtomicBool::new(false));
        let thread_stopped = stopped.clone();
        let event_thread = std::thread::Builder::new()
            .name("coord-events".into())
            .spawn(move || run_event_thread(receiver, thread_stopped))
            .map_err(|_| coord_result::COORD_IO)?;
        let handle = coord_client {
            core: Arc::new(Core { runtime, client }),
            events,
            event_thread: Some(event_thread),
            stopped,
        };
        ptr::write(out, ptr::give(handle));
        Ok(())
    })
}

/// Closes the session (its ephemeral nodes go at once) and frees the handle. Waits for the
/// event thread to finish the callback it is in (unless called from that callback); no
/// callback is called after it returns. NULL is fine. No other call may use the handle
/// meanwhile. Locks and leaderships taken through this client stay to be freed, but their nodes go
/// with the session.
#[no_mangle]
pub extern "C" fn coord_client_free(client: *mut coord_client) {
    guard_void(|| {
        let Some(mut handle) = ptr::take(client) else {
            return;
        };
        handle.stopped.store(true, Ordering::Release);
        let core = handle.core.clone();
        let _ = core.runtime.block_on(async {
            tokio::time::timeout(CLOSE_WAIT, core.client.clone().close()).await
        });
        // Watch tasks hold senders too: the thread is told to stop rather than left to see
        // the channel close. From a callback (on the event thread itself) it stops once the
        // callback returns.
        if let Some(thread) = handle.event_thread.take() {
            if ON_EVENT_THREAD.with(std::cell::Cell::get) {
                let _ = handle.events.try_send(Message::Stop);
            } else {
                let _ = handle.events.blocking_send(Message::Stop);
                let _ = thread.join();
            }
        }
        drop(handle);
        drop(core);
    })
}

fn client_ref<'a>(client: *const coord_client) -> Result<&'a coord_client, coord_result> {
    ptr::handle(client)
}

fn acl_arg(acl: *const coord_acl, len: usize) -> Result<Vec<Acl>, coord_result> {
    if acl.is_null() && len == 0 {
        return Ok(Acl::open_unsafe());
    }
    ptr::slice_arg(acl, len)?
        .iter()
        .map(|entry| {
            Ok(Acl {
                perms: i32::try_from(entry.perms).map_err(|_| coord_result::COORD_BAD_ARGUMENTS)?,
                id: Id::new(ptr::str_arg(entry.scheme)?, ptr::str_arg(entry.id)?),
            })
        })
        .collect()
}

/// Creates a node in `mode` (a `coord_create_mode`). `data` may be NULL with `data_len` 0.
/// `acl` NULL with `acl_len` 0 means open to anyone (ZooKeeper's OPEN_ACL_UNSAFE). `ttl_ms` is
/// for the TTL modes only (else 0).
/// The created path (with its sequence number) goes to `*created_path` unless that is NULL;
/// free it with `coord_string_free`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn coord_create(
    client: *const coord_client,
    path: *const c_char,
    data: *const u8,
    data_len: usize,
    acl: *const coord_acl,
    acl_len: usize,
    mode: u32,
    ttl_ms: i64,
    created_path: *mut *mut c_char,
) -> coord_result {
    guard(|| {
        let handle = client_ref(client)?;
        let path = ptr::str_arg(path)?;
        let data = ptr::bytes_arg(data, data_len)?;
        let acl = acl_arg(acl, acl_len)?;
        let mode = create_mode(mode)?;
        let c = &handle.core.client;
        let created = if mode.is_ttl() {
            let ttl = Duration::from_millis(
                u64::try_from(ttl_ms).map_err(|_| coord_result::COORD_BAD_ARGUMENTS)?,
            );
            handle
                .core
                .block_on(c.create_ttl(path, data, &acl, mode, ttl))?
                .0
        } else {
            handle.core.block_on(c.create(path, data, &acl, mode))?
        };
        if !created_path.is_null() {
            ptr::write(created_path, ptr::give_string(&created));
        }
        Ok(())
    })
}

/// Deletes a node if its version is `version` (-1: any).
#[no_mangle]
pub extern "C" fn coord_delete(
    client: *const coord_client,
    path: *const c_char,
    version: i32,
) -> coord_result {
    guard(|| {
        let handle = client_ref(client)?;
        let path = ptr::str_arg(path)?;
        handle
            .core
            .block_on(handle.core.client.delete(path, version))
    })
}

/// Whether a node exists (`*exists`), and its Stat if it does and `stat` is not NULL.
#[no_mangle]
pub extern "C" fn coord_exists(
    client: *const coord_client,
    path: *const c_char,
    exists: *mut bool,
    stat: *mut coord_stat,
) -> coord_result {
    guard(|| {
        let handle = client_ref(client)?;
        let path = ptr::str_arg(path)?;
        ptr::check_out(exists)?;
        let found = handle.core.block_on(handle.core.client.exists(path))?;
        ptr::write(exists, found.is_some());
        if let Some(found) = found {
            ptr::write(stat, found.into());
        }
        Ok(())
    })
}

/// A node's data, to `*data` and `*data_len` (free with `coord_buffer_free`), and its Stat
/// unless `stat` is NULL.
#[no_mangle]
pub extern "C" fn coord_get(
    client: *const coord_client,
    path: *const c_char,
    data: *mut *mut u8,
    data_len: *mut usize,
    stat: *mut coord_stat,
) -> coord_result {
    guard(|| {
        let handle = client_ref(client)?;
        let path = ptr::str_arg(path)?;
        ptr::check_out(data)?;
        ptr::check_out(data_len)?;
        let (bytes, found) = handle.core.block_on(handle.core.client.get_data(path))?;
        give_data(bytes, found, data, data_len, stat);
        Ok(())
    })
}

fn give_data(
    bytes: Vec<u8>,
    found: Stat,
    data: *mut *mut u8,
    data_len: *mut usize,
    stat: *mut coord_stat,
) {
    let (bytes, len) = ptr::give_bytes(bytes);
    ptr::write(data, bytes);
    ptr::write(data_len, len);
    ptr::write(stat, found.into());
}

/// Replaces a node's data if its version is `version` (-1: any); the new Stat goes to
/// `*stat` unless it is NULL.
#[no_mangle]
pub extern "C" fn coord_set(
    client: *const coord_client,
    path: *const c_char,
    data: *const u8,
    data_len: usize,
    version: i32,
    stat: *mut coord_stat,
) -> coord_result {
    guard(|| {
        let handle = client_ref(client)?;
        let path = ptr::str_arg(path)?;
        let data = ptr::bytes_arg(data, data_len)?;
        let written = handle
            .core
            .block_on(handle.core.client.set_data(path, data, version))?;
        ptr::write(stat, written.into());
        Ok(())
    })
}

/// A node's children's names, to `*children` (free with `coord_string_list_free`).
#[no_mangle]
pub extern "C" fn coord_children(
    client: *const coord_client,
    path: *const c_char,
    children: *mut coord_string_list,
) -> coord_result {
    guard(|| {
        let handle = client_ref(client)?;
        let path = ptr::str_arg(path)?;
        ptr::check_out(children)?;
        let names = handle
            .core
            .block_on(handle.core.client.get_children(path))?;
        ptr::write(children, string_list(&names));
        Ok(())
    })
}

fn string_list(names: &[String]) -> coord_string_list {
    let items: Vec<*mut c_char> = names.iter().map(|name| ptr::give_string(name)).collect();
    let (items, len) = ptr::give_array(items);
    coord_string_list { items, len }
}

/// Waits until the server has applied every write committed before the call.
#[no_mangle]
pub extern "C" fn coord_sync(client: *const coord_client, path: *const c_char) -> coord_result {
    guard(|| {
        let handle = client_ref(client)?;
        let path = ptr::str_arg(path)?;
        handle
            .core
            .block_on(handle.core.client.sync(path))
            .map(drop)
    })
}

/// A node's ACL, to `*acl` (free with `coord_acl_list_free`), and its Stat unless `stat` is
/// NULL.
#[no_mangle]
pub extern "C" fn coord_get_acl(
    client: *const coord_client,
    path: *const c_char,
    acl: *mut coord_acl_list,
    stat: *mut coord_stat,
) -> coord_result {
    guard(|| {
        let handle = client_ref(client)?;
        let path = ptr::str_arg(path)?;
        ptr::check_out(acl)?;
        let (entries, found) = handle.core.block_on(handle.core.client.get_acl(path))?;
        let entries: Vec<coord_acl> = entries
            .iter()
            .map(|entry| coord_acl {
                perms: entry.perms as u32,
                scheme: ptr::give_string(&entry.id.scheme),
                id: ptr::give_string(&entry.id.id),
            })
            .collect();
        let (acls, len) = ptr::give_array(entries);
        ptr::write(acl, coord_acl_list { acls, len });
        ptr::write(stat, found.into());
        Ok(())
    })
}

/// Replaces a node's ACL if its ACL version is `version` (-1: any).
#[no_mangle]
pub extern "C" fn coord_set_acl(
    client: *const coord_client,
    path: *const c_char,
    acl: *const coord_acl,
    acl_len: usize,
    version: i32,
) -> coord_result {
    guard(|| {
        let handle = client_ref(client)?;
        let path = ptr::str_arg(path)?;
        let acl = acl_arg(acl, acl_len)?;
        handle
            .core
            .block_on(handle.core.client.set_acl(path, &acl, version))
            .map(drop)
    })
}

/// Adds credentials to the session (`"digest"` with `"user:password"`, say); they are
/// presented again whenever the session reconnects.
#[no_mangle]
pub extern "C" fn coord_add_auth(
    client: *const coord_client,
    scheme: *const c_char,
    auth: *const u8,
    auth_len: usize,
) -> coord_result {
    guard(|| {
        let handle = client_ref(client)?;
        let scheme = ptr::str_arg(scheme)?;
        let auth = ptr::bytes_arg(auth, auth_len)?;
        handle
            .core
            .block_on(handle.core.client.add_auth(scheme, auth))
    })
}

/// The kind of one operation of a `coord_multi`.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum coord_op_kind {
    /// Creates `path` with `data` in `mode`, open to anyone.
    COORD_OP_CREATE = 1,
    /// Deletes `path` at `version`.
    COORD_OP_DELETE = 2,
    /// Sets `path`'s `data` at `version`.
    COORD_OP_SET = 3,
    /// Fails the transaction unless `path` is at `version`.
    COORD_OP_CHECK = 4,
}

/// One operation of a `coord_multi`; fields an operation does not use are ignored.
#[repr(C)]
#[derive(Debug)]
pub struct coord_op {
    /// A `coord_op_kind`.
    pub kind: u32,
    pub path: *const c_char,
    pub data: *const u8,
    pub data_len: usize,
    pub version: i32,
    /// A `coord_create_mode`, for `COORD_OP_CREATE`.
    pub mode: u32,
}

/// Runs `ops` as one transaction: all of them happen, or (with the first failure's result)
/// none.
#[no_mangle]
pub extern "C" fn coord_multi(
    client: *const coord_client,
    ops: *const coord_op,
    ops_len: usize,
) -> coord_result {
    guard(|| {
        let handle = client_ref(client)?;
        let ops = ptr::slice_arg(ops, ops_len)?
            .iter()
            .map(|op| {
                let path = ptr::str_arg(op.path)?.to_owned();
                const CREATE: u32 = coord_op_kind::COORD_OP_CREATE as u32;
                const DELETE: u32 = coord_op_kind::COORD_OP_DELETE as u32;
                const SET: u32 = coord_op_kind::COORD_OP_SET as u32;
                const CHECK: u32 = coord_op_kind::COORD_OP_CHECK as u32;
                Ok(match op.kind {
                    CREATE => Op::Create {
                        path,
                        data: ptr::bytes_arg(op.data, op.data_len)?.to_vec(),
                        acl: Acl::open_unsafe(),
                        mode: create_mode(op.mode)?,
                    },
                    DELETE => Op::Delete {
                        path,
                        version: op.version,
                    },
                    SET => Op::SetData {
                        path,
                        data: ptr::bytes_arg(op.data, op.data_len)?.to_vec(),
                        version: op.version,
                    },
                    CHECK => Op::Check {
                        path,
                        version: op.version,
                    },
                    _ => return Err(coord_result::COORD_BAD_ARGUMENTS),
                })
            })
            .collect::<Result<Vec<_>, coord_result>>()?;
        handle
            .core
            .block_on(handle.core.client.multi(&ops))
            .map(drop)
    })
}

/// Which watch a `coord_*_watch` call sets.
#[derive(Clone, Copy)]
enum Kind {
    Data,
    Exists,
    Children,
}

fn one_shot(
    client: *const coord_client,
    path: *const c_char,
    kind: Kind,
    callback: coord_watch_fn,
    context: *mut c_void,
) -> Result<(), coord_result> {
    let handle = client_ref(client)?;
    let path = ptr::str_arg(path)?;
    let callback = callback.ok_or(coord_result::COORD_NULL_ARGUMENT)?;
    let c = &handle.core.client;
    let watch = match kind {
        Kind::Data => handle.core.block_on(c.get_data_watch(path))?.2,
        Kind::Exists => handle.core.block_on(c.exists_watch(path))?.1,
        Kind::Children => handle.core.block_on(c.get_children_watch(path))?.1,
    };
    let events = handle.events.clone();
    let context = Context(context);
    handle.core.runtime.spawn(async move {
        let event = watch.await;
        let _ = events
            .send(Message::Deliver(Delivery {
                callback,
                context,
                event,
            }))
            .await;
    });
    Ok(())
}

/// Sets a one-shot watch on a node's data: `callback(context, event)` is called once, on the
/// event thread, when the data changes or the node is deleted (or with a `result` when the
/// session ends first). The node must exist. The watch survives reconnections.
#[no_mangle]
pub extern "C" fn coord_watch_data(
    client: *const coord_client,
    path: *const c_char,
    callback: coord_watch_fn,
    context: *mut c_void,
) -> coord_result {
    guard(|| one_shot(client, path, Kind::Data, callback, context))
}

/// As `coord_watch_data`, and also fires when the node is created; the node need not exist.
#[no_mangle]
pub extern "C" fn coord_watch_exists(
    client: *const coord_client,
    path: *const c_char,
    callback: coord_watch_fn,
    context: *mut c_void,
) -> coord_result {
    guard(|| one_shot(client, path, Kind::Exists, callback, context))
}

/// A one-shot watch on a node's children: fires when one is added or removed, or the node
/// is deleted.
#[no_mangle]
pub extern "C" fn coord_watch_children(
    client: *const coord_client,
    path: *const c_char,
    callback: coord_watch_fn,
    context: *mut c_void,
) -> coord_result {
    guard(|| one_shot(client, path, Kind::Children, callback, context))
}

/// A persistent watch on a node (`recursive`: and every node under it): the callback is called
/// for every change, in order, until the session ends or the watch is removed with
/// `coord_remove_persistent_watch`. A recursive watch is not told of child list changes. Two
/// calls with a `result` say that changes may have gone unreported (read the state again; the
/// watch goes on): `COORD_LAGGED`, when the callback fell more than 4096 events behind and
/// later ones were dropped until it caught up; `COORD_CONNECTION_LOSS`, when the session moved
/// to a new connection (the server does not replay what changed meanwhile).
#[no_mangle]
pub extern "C" fn coord_watch_persistent(
    client: *const coord_client,
    path: *const c_char,
    recursive: bool,
    callback: coord_watch_fn,
    context: *mut c_void,
) -> coord_result {
    guard(|| {
        let handle = client_ref(client)?;
        let path = ptr::str_arg(path)?;
        let callback = callback.ok_or(coord_result::COORD_NULL_ARGUMENT)?;
        let mode = if recursive {
            AddWatchMode::PersistentRecursive
        } else {
            AddWatchMode::Persistent
        };
        let mut watch = handle
            .core
            .block_on(handle.core.client.add_watch(path, mode))?;
        let events = handle.events.clone();
        let context = Context(context);
        handle.core.runtime.spawn(async move {
            loop {
                let event = watch.next().await;
                let last = matches!(
                    event,
                    Err(Error::SessionExpired | Error::Closed | Error::Server(_))
                );
                let delivery = Delivery {
                    callback,
                    context,
                    event,
                };
                if events.send(Message::Deliver(delivery)).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(())
    })
}

/// Removes the session's persistent watches on `path` (recursive ones if `recursive`); their
/// callback is called once more with event type 7 (persistent watch removed).
#[no_mangle]
pub extern "C" fn coord_remove_persistent_watch(
    client: *const coord_client,
    path: *const c_char,
    recursive: bool,
) -> coord_result {
    guard(|| {
        let handle = client_ref(client)?;
        let path = ptr::str_arg(path)?;
        let kind = if recursive {
            ::coord_client::WatcherType::PersistentRecursive
        } else {
            ::coord_client::WatcherType::Persistent
        };
        handle
            .core
            .block_on(handle.core.client.remove_watches(path, kind))
    })
}

/// Where the session stands.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum coord_state {
    COORD_CONNECTED = 0,
    /// The connection broke; calls wait for the next one.
    COORD_SUSPENDED = 1,
    /// The session expired.
    COORD_LOST = 2,
    COORD_CLOSED_STATE = 3,
}

/// Where the session stands now.
#[no_mangle]
pub extern "C" fn coord_client_state(
    client: *const coord_client,
    state: *mut coord_state,
) -> coord_result {
    guard(|| {
        let handle = client_ref(client)?;
        ptr::check_out(state)?;
        let now = match handle.core.client.state() {
            ::coord_client::SessionState::Connected => coord_state::COORD_CONNECTED,
            ::coord_client::SessionState::Suspended => coord_state::COORD_SUSPENDED,
            ::coord_client::SessionState::Lost => coord_state::COORD_LOST,
            _ => coord_state::COORD_CLOSED_STATE,
        };
        ptr::write(state, now);
        Ok(())
    })
}

/// The session's id.
#[no_mangle]
pub extern "C" fn coord_client_session_id(
    client: *const coord_client,
    session_id: *mut i64,
) -> coord_result {
    guard(|| {
        let handle = client_ref(client)?;
        ptr::check_out(session_id)?;
        ptr::write(session_id, handle.core.client.session_id());
        Ok(())
    })
}

/// Frees a string libcoord gave. NULL is fine.
#[no_mangle]
pub extern "C" fn coord_string_free(text: *mut c_char) {
    guard_void(|| ptr::free_string(text));
}

/// Frees data libcoord gave, with the length it gave. NULL is fine.
#[no_mangle]
pub extern "C" fn coord_buffer_free(data: *mut u8, len: usize) {
    guard_void(|| ptr::free_bytes(data, len));
}

/// Frees the strings of a list libcoord filled, and empties it. NULL is fine.
#[no_mangle]
pub extern "C" fn coord_string_list_free(list: *mut coord_string_list) {
    guard_void(|| {
        let Ok(filled) = ptr::handle_mut(list) else {
            return;
        };
        for item in ptr::free_array(filled.items, filled.len) {
            ptr::free_string(item);
        }
        filled.items = std::ptr::null_mut();
        filled.len = 0;
    });
}

/// Frees the entries of an ACL list libcoord filled, and empties it. NULL is fine.
#[no_mangle]
pub extern "C" fn coord_acl_list_free(list: *mut coord_acl_list) {
    guard_void(|| {
        let Ok(filled) = ptr::handle_mut(list) else {
            return;
        };
        for entry in ptr::free_array(filled.acls, filled.len) {
            ptr::free_string(entry.scheme.cast_mut());
            ptr::free_string(entry.id.cast_mut());
        }
        filled.acls = std::ptr::null_mut();
        filled.len = 0;
    });
}
