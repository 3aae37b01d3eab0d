//! Who a connection is: its address and the identities it proved with `addauth`.

use std::sync::Arc;

use coord_proto::Id;

/// The authenticated identity of a connection.
pub struct Auth {
    /// Its address (`ip`) and every id it proved, at most [`AUTH_IDS_MAX`]. Shared with the
    /// watch manager, which checks READ for the connection's events.
    pub ids: Arc<[Id]>,
    pub is_super: bool,
}

/// The most identities one connection may hold (its `ip` id included). ZooKeeper has no bound;
/// every ACL check and every `auth` ACL expansion is linear in it. One more `addauth` is
/// answered AuthFailed and the connection closed, as a failed one is.
pub const AUTH_IDS_MAX: usize = 16;

/// The longest credential (`user:password`) a digest `addauth` may carry; longer ones fail.
pub const AUTH_DATA_BYTES_MAX: usize = 1024;

/// The identity an auth packet proves, or None if the scheme is not supported here.
pub fn authenticate(auth: &coord_proto::AuthPacket) -> Option<Id> {
    match auth.scheme.as_str() {
        "digest" => {
            // The user name becomes part of the id, which `auth` ACL entries copy into every
            // node they create: bounded, so an id cannot turn a small request into a big one.
            if auth.auth.len() > AUTH_DATA_BYTES_MAX {
                return None;
            }
            let text = std::str::from_utf8(&auth.auth).ok()?;
            Some(Id::new("digest", coord_znode::digest_id(text)))
        }
        _ => None,
    }
}
