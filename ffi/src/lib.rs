//! libcoord: coord's client for C and C++, and a coord server to embed, over a C ABI.
//!
//! The header is `include/coord.h`, made by cbindgen from this crate (a test fails when it is
//! stale; `UPDATE_HEADER=1 cargo test -p libcoord` rewrites it). Conventions, for every
//! function:
//! - It returns a `coord_result` (`COORD_OK` is 0; `coord_strerror` explains the others), and
//!   never unwinds: a panic inside is `COORD_PANIC`.
//! - Out-parameters are written only on success. What libcoord hands out, the caller frees
//!   with the function its documentation names (`coord_string_free`, `coord_buffer_free`,
//!   `coord_string_list_free`, `coord_acl_list_free`, the handles' `_free`/`_stop`/`_release`).
//!   Every free function accepts NULL.
//! - A `coord_client` may be used from several threads at once. Calls block their thread until
//!   the answer; watch callbacks run on the client's own event thread.

#![allow(non_camel_case_types)]

mod client;
mod panic;
mod ptr;
mod recipes;
mod result;
mod server;

use std::ffi::c_char;

pub use client::{
    coord_acl, coord_acl_list, coord_client, coord_create_mode, coord_event, coord_op,
    coord_op_kind, coord_stat, coord_state, coord_string_list, coord_watch_fn,
};
pub use recipes::{coord_leadership, coord_lock};
pub use result::coord_result;
pub use server::coord_server;

/// Permission bits of a `coord_acl`, as ZooKeeper's.
pub const COORD_PERM_READ: u32 = 1;
pub const COORD_PERM_WRITE: u32 = 2;
pub const COORD_PERM_CREATE: u32 = 4;
pub const COORD_PERM_DELETE: u32 = 8;
pub const COORD_PERM_ADMIN: u32 = 16;
pub const COORD_PERM_ALL: u32 = 31;

/// libcoord's version, as a static NUL-terminated string.
#[no_mangle]
pub extern "C" fn coord_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    /// The committed header is what cbindgen makes of this crate now.
    #[test]
    fn the_committed_header_is_current() {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
        let mut made = Vec::new();
        cbindgen::Builder::new()
            .with_crate(crate_dir)
            .with_config(config)
            .generate()
            .unwrap()
            .write(&mut made);
        let path = crate_dir.join("include/coord.h");
        if std::env::var_os("UPDATE_HEADER").is_some() {
            std::fs::write(&path, &made).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == made,
            "include/coord.h is stale: run UPDATE_HEADER=1 cargo test -p libcoord and commit it"
        );
    }
}
