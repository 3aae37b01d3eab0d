//! The lock and leader election recipes for C.

use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

use ::coord_client::recipes::{Election, Leadership, Lock, LockGuard};

use crate::client::{coord_client, Core};
use crate::panic::{guard, guard_void};
use crate::ptr;
use crate::result::coord_result;

/// A held lock. Opaque; made by `coord_lock_acquire`, released and freed by
/// `coord_lock_release`.
pub struct coord_lock {
    core: Arc<Core>,
    guard: LockGuard,
}

/// Takes the lock on `path` (a directory shared by every contender), waiting at most
/// `timeout_ms` (-1: as long as it takes): `COORD_TIMEOUT` if it was not had by then. Waiters
/// are served in order, each woken only by the one before it.
#[no_mangle]
pub extern "C" fn coord_lock_acquire(
    client: *const coord_client,
    path: *const c_char,
    timeout_ms: i64,
    lock: *mut *mut coord_lock,
) -> coord_result {
    guard(|| {
        let handle = ptr::handle(client)?;
        let path = ptr::str_arg(path)?;
        ptr::check_out(lock)?;
        let core = handle.core.clone();
        let recipe = Lock::new(&core.client, path);
        let held = match u64::try_from(timeout_ms) {
            Ok(ms) => core
                .block_on(recipe.acquire_timeout(Duration::from_millis(ms)))?
                .ok_or(coord_result::COORD_TIMEOUT)?,
            Err(_) => core.block_on(recipe.acquire())?,
        };
        ptr::write(lock, ptr::give(coord_lock { core, guard: held }));
        Ok(())
    })
}

/// Releases the lock and frees the handle (also when the release fails: the node then goes
/// with the session). NULL is fine.
#[no_mangle]
pub extern "C" fn coord_lock_release(lock: *mut coord_lock) -> coord_result {
    guard(|| {
        let Some(held) = ptr::take(lock) else {
            return Ok(());
        };
        let coord_lock { core, guard } = *held;
        core.block_on(guard.release())
    })
}

/// Leading an election. Opaque; made by `coord_election_campaign`, freed (resigning) by
/// `coord_leadership_resign`.
pub struct coord_leadership {
    core: Arc<Core>,
    leadership: Leadership,
}

/// Joins the election on `path` with `identifier` (any bytes; NULL with length 0 for none) and
/// waits to lead, at most `timeout_ms` (-1: as long as it takes).
#[no_mangle]
pub extern "C" fn coord_election_campaign(
    client: *const coord_client,
    path: *const c_char,
    identifier: *const u8,
    identifier_len: usize,
    timeout_ms: i64,
    leadership: *mut *mut coord_leadership,
) -> coord_result {
    guard(|| {
        let handle = ptr::handle(client)?;
        let path = ptr::str_arg(path)?;
        let identifier = ptr::bytes_arg(identifier, identifier_len)?;
        ptr::check_out(leadership)?;
        let core = handle.core.clone();
        let election = Election::new(&core.client, path, identifier);
        let leading = match u64::try_from(timeout_ms) {
            Ok(ms) => core
                .runtime
                .block_on(async {
                    tokio::time::timeout(Duration::from_millis(ms), election.campaign()).await
                })
                .map_err(|_| coord_result::COORD_TIMEOUT)?
                .map_err(coord_result::from)?,
            Err(_) => core.block_on(election.campaign())?,
        };
        ptr::write(
            leadership,
            ptr::give(coord_leadership {
                core,
                leadership: leading,
            }),
        );
        Ok(())
    })
}

/// Waits at most `timeout_ms` (-1: as long as it takes) for the leadership to be lost: `*lost`
/// says whether it was. Not to be called on one leadership from two threads at once. It is lost when the connection breaks (the session may be expiring:
/// stop acting as leader at once), when the session ends, or when the node is deleted.
#[no_mangle]
pub extern "C" fn coord_leadership_wait_lost(
    leadership: *mut coord_leadership,
    timeout_ms: i64,
    lost: *mut bool,
) -> coord_result {
    guard(|| {
        let leading = ptr::handle_mut(leadership)?;
        ptr::check_out(lost)?;
        let core = leading.core.clone();
        let over = core.runtime.block_on(async {
            match u64::try_from(timeout_ms) {
                Ok(ms) => {
                    tokio::time::timeout(Duration::from_millis(ms), leading.leadership.lost())
                        .await
                        .is_ok()
                }
                Err(_) => {
                    leading.leadership.lost().await;
                    true
                }
            }
        });
        ptr::write(lost, over);
        Ok(())
    })
}

/// Gives the leadership up (the next contender leads) and frees the handle. NULL is fine. Not
/// while another thread is in `coord_leadership_wait_lost` on it (as for any `_free`).
#[no_mangle]
pub extern "C" fn coord_leadership_resign(leadership: *mut coord_leadership) -> coord_result {
    guard(|| {
        let Some(leading) = ptr::take(leadership) else {
            return Ok(());
        };
        let coord_leadership { core, leadership } = *leading;
        core.block_on(leadership.resign())
    })
}

/// Frees a lock handle without waiting for the release (it happens in the background).
#[no_mangle]
pub extern "C" fn coord_lock_free(lock: *mut coord_lock) {
    guard_void(|| {
        if let Some(held) = ptr::take(lock) {
            // The background release runs on the client's runtime.
            let core = held.core.clone();
            let _inside = core.runtime.enter();
            drop(held);
        }
    });
}
