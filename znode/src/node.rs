//! One znode in a single shared allocation, and the ordering that makes children contiguous.
//!
//! A node is an `Arc<[u8]>` holding a fixed little-endian header (the persisted Stat fields,
//! the child count, the ACL index, the depth and the path length), then the full path, then the
//! data. One allocation per node keeps a 13-byte name with 100 bytes of data near 220 bytes of
//! heap, and lets a snapshot take every node by bumping a reference count.
//!
//! Nodes are ordered by (depth, path). All children of `P` have depth `depth(P) + 1` and start
//! with `P/`, so they form one contiguous run in that order: the tree needs no per-node
//! children set.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use coord_proto::Stat;

use crate::path::depth_of;

const CZXID: usize = 0;
const MZXID: usize = 8;
const PZXID: usize = 16;
const CTIME: usize = 24;
const MTIME: usize = 32;
const OWNER: usize = 40;
const VERSION: usize = 48;
const CVERSION: usize = 52;
const AVERSION: usize = 56;
const NUM_CHILDREN: usize = 60;
const ACL: usize = 64;
const DEPTH: usize = 68;
const PATH_LEN: usize = 72;
/// Bytes before the path.
pub(crate) const HEADER_LEN: usize = 76;

/// The mutable part of a node: ZooKeeper's `StatPersisted`, the child count and the ACL index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Meta {
    pub czxid: i64,
    pub mzxid: i64,
    pub pzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub ephemeral_owner: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub num_children: i32,
    pub acl: u32,
}

impl Meta {
    /// The Stat a client sees, as `DataNode.copyStat` makes it: the stored cversion counts child
    /// creations (it names sequential children), while clients see every change of the children,
    /// and each child no longer present was also deleted once. Containers and TTL nodes show no
    /// ephemeral owner.
    pub fn stat(&self, data_length: usize) -> Stat {
        let ephemeral_owner = match ephemeral::kind(self.ephemeral_owner) {
            ephemeral::Kind::Normal => self.ephemeral_owner,
            ephemeral::Kind::Void | ephemeral::Kind::Container | ephemeral::Kind::Ttl(_) => 0,
        };
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self
                .cversion
                .wrapping_mul(2)
                .wrapping_sub(self.num_children),
            aversion: self.aversion,
            ephemeral_owner,
            data_length: i32::try_from(data_length).unwrap_or(i32::MAX),
            num_children: self.num_children,
            pzxid: self.pzxid,
        }
    }
}

/// A znode: shared, immutable; updates build a new one.
#[derive(Clone)]
pub(crate) struct Entry(Arc<[u8]>);

fn rd_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn rd_i32(b: &[u8], at: usize) -> i32 {
    rd_u32(b, at) as i32
}

impl Entry {
    /// Builds a node. `path` must be a valid path (a [`crate::ZPath`]'s text).
    pub fn new(meta: &Meta, path: &str, data: &[u8]) -> Entry {
        let path_len =
            u32::try_from(path.len()).unwrap_or_else(|_| panic!("path of {} bytes", path.len()));
        let mut buf = Vec::with_capacity(HEADER_LEN + path.len() + data.len());
        buf.extend_from_slice(&meta.czxid.to_le_bytes());
        buf.extend_from_slice(&meta.mzxid.to_le_bytes());
        buf.extend_from_slice(&meta.pzxid.to_le_bytes());
        buf.extend_from_slice(&meta.ctime.to_le_bytes());
        buf.extend_from_slice(&meta.mtime.to_le_bytes());
        buf.extend_from_slice(&meta.ephemeral_owner.to_le_bytes());
        buf.extend_from_slice(&meta.version.to_le_bytes());
        buf.extend_from_slice(&meta.cversion.to_le_bytes());
        buf.extend_from_slice(&meta.aversion.to_le_bytes());
        buf.extend_from_slice(&meta.num_children.to_le_bytes());
        buf.extend_from_slice(&meta.acl.to_le_bytes());
        buf.extend_from_slice(&depth_of(path).to_le_bytes());
        buf.extend_from_slice(&path_len.to_le_bytes());
        debug_assert_eq!(buf.len(), HEADER_LEN);
        buf.extend_from_slice(path.as_bytes());
        buf.extend_from_slice(data);
        Entry(buf.into())
    }

    /// Reads a node back from [`Entry::raw`] bytes, checking its layout and path.
    pub fn from_raw(raw: &[u8]) -> Result<Entry, String> {
        if raw.len() < HEADER_LEN {
            return Err(format!("node record of {} bytes", raw.len()));
        }
        let path_len = rd_u32(raw, PATH_LEN) as usize;
        let path_end = HEADER_LEN
            .checked_add(path_len)
            .filter(|&e| e <= raw.len())
            .ok_or_else(|| format!("path length {path_len} beyond record"))?;
        let path = std::str::from_utf8(&raw[HEADER_LEN..path_end])
            .map_err(|_| "node path is not UTF-8".to_string())?;
        crate::ZPath::parse(path).map_err(|e| e.to_string())?;
        if rd_u32(raw, DEPTH) != depth_of(path) {
            return Err(format!("node {path:?} has a wrong depth"));
        }
        if rd_i32(raw, NUM_CHILDREN) < 0 {
            return Err(format!("node {path:?} has a negative child count"));
        }
        Ok(Entry(raw.into()))
    }

    /// The node's bytes as [`Entry::from_raw`] reads them.
    pub fn raw(&self) -> &[u8] {
        &self.0
    }

    pub fn meta(&self) -> Meta {
        let b = &self.0;
        Meta {
            czxid: rd_i64(b, CZXID),
            mzxid: rd_i64(b, MZXID),
            pzxid: rd_i64(b, PZXID),
            ctime: rd_i64(b, CTIME),
            mtime: rd_i64(b, MTIME),
            ephemeral_owner: rd_i64(b, OWNER),
            version: rd_i32(b, VERSION),
            cversion: rd_i32(b, CVERSION),
            aversion: rd_i32(b, AVERSION),
            num_children: rd_i32(b, NUM_CHILDREN),
            acl: rd_u32(b, ACL),
        }
    }

    pub fn ephemeral_owner(&self) -> i64 {
        rd_i64(&self.0, OWNER)
    }

    pub fn num_children(&self) -> i32 {
        rd_i32(&self.0, NUM_CHILDREN)
    }

    pub fn acl_index(&self) -> u32 {
        rd_u32(&self.0, ACL)
    }

    fn path_end(&self) -> usize {
        HEADER_LEN + rd_u32(&self.0, PATH_LEN) as usize
    }

    pub fn path(&self) -> &str {
        match std::str::from_utf8(&self.0[HEADER_LEN..self.path_end()]) {
            Ok(p) => p,
            // Entries are only built from valid paths (new, from_raw).
            Err(_) => panic!("znode path is not UTF-8"),
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.0[self.path_end()..]
    }

    /// The data as a shared buffer, without copying it.
    pub fn data_bytes(&self) -> Bytes {
        let start = self.path_end();
        if start == self.0.len() {
            return Bytes::new();
        }
        Bytes::from_owner(Owner(self.0.clone())).slice(start..)
    }

    pub fn stat(&self) -> Stat {
        self.meta().stat(self.data().len())
    }

    /// The same node with a new header.
    pub fn with_meta(&self, meta: &Meta) -> Entry {
        Entry::new(meta, self.path(), self.data())
    }
}

struct Owner(Arc<[u8]>);

impl AsRef<[u8]> for Owner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The ordering key of a node: (depth, path bytes).
pub(crate) trait Key {
    fn depth(&self) -> u32;
    fn path_bytes(&self) -> &[u8];
}

impl Key for Entry {
    fn depth(&self) -> u32 {
        rd_u32(&self.0, DEPTH)
    }
    fn path_bytes(&self) -> &[u8] {
        &self.0[HEADER_LEN..self.path_end()]
    }
}

/// A borrowed key for lookups and range scans.
pub(crate) struct Probe<'a> {
    pub depth: u32,
    pub path: &'a [u8],
}

impl<'a> Probe<'a> {
    pub fn of(path: &'a str) -> Probe<'a> {
        Probe {
            depth: depth_of(path),
            path: path.as_bytes(),
        }
    }
}

impl Key for Probe<'_> {
    fn depth(&self) -> u32 {
        self.depth
    }
    fn path_bytes(&self) -> &[u8] {
        self.path
    }
}

impl PartialEq for dyn Key + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for dyn Key + '_ {}
impl PartialOrd for dyn Key + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for dyn Key + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.depth()
            .cmp(&other.depth())
            .then_with(|| self.path_bytes().cmp(other.path_bytes()))
    }
}

impl<'a> Borrow<dyn Key + 'a> for Entry {
    fn borrow(&self) -> &(dyn Key + 'a) {
        self
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self as &dyn Key).cmp(other as &dyn Key)
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("path", &self.path())
            .field("meta", &self.meta())
            .field("data_len", &self.data().len())
            .finish()
    }
}

/// `EphemeralType`: how `ephemeralOwner` encodes containers and TTL nodes.
pub mod ephemeral {
    /// `EphemeralType.CONTAINER_EPHEMERAL_OWNER`.
    pub const CONTAINER_OWNER: i64 = i64::MIN;
    const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000_u64 as i64;
    const RESERVED_BITS_MASK: i64 = 0x00ff_ff00_0000_0000;
    /// `EphemeralType.TTL.maxValue()`: the largest TTL in milliseconds.
    pub const TTL_MAX: i64 = !(EXTENDED_MASK | RESERVED_BITS_MASK);

    /// What kind of node an `ephemeralOwner` value denotes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        /// A persistent node (owner 0).
        Void,
        /// An ephemeral node owned by a session.
        Normal,
        Container,
        /// A TTL node with its TTL in milliseconds.
        Ttl(i64),
    }

    /// `EphemeralType.get` with extended types enabled.
    pub fn kind(owner: i64) -> Kind {
        if owner & EXTENDED_MASK == EXTENDED_MASK && owner & RESERVED_BITS_MASK == 0 {
            return Kind::Ttl(owner & TTL_MAX);
        }
        match owner {
            CONTAINER_OWNER => Kind::Container,
            0 => Kind::Void,
            _ => Kind::Normal,
        }
    }

    /// `EphemeralType.TTL.toEphemeralOwner`, or `None` if the TTL is out of range.
    pub fn ttl_owner(ttl_ms: i64) -> Option<i64> {
        (ttl_ms > 0 && ttl_ms <= TTL_MAX).then_some(EXTENDED_MASK | ttl_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trips_fields() {
        let meta = Meta {
            czxid: 1,
            mzxid: 2,
            pzxid: 3,
            ctime: 4,
            mtime: 5,
            ephemeral_owner: -6,
            version: 7,
            cversion: -8,
            aversion: 9,
            num_children: 10,
            acl: 11,
        };
        let e = Entry::new(&meta, "/a/b", b"hello");
        assert_eq!(e.meta(), meta);
        assert_eq!(e.path(), "/a/b");
        assert_eq!(e.data(), b"hello");
        assert_eq!(&e.data_bytes()[..], b"hello");
        assert_eq!(e.depth(), 2);
        assert_eq!(e.stat().data_length, 5);
        let back = Entry::from_raw(e.raw()).unwrap();
        assert_eq!(back.meta(), meta);
        assert!(Entry::from_raw(&e.raw()[..HEADER_LEN + 2]).is_err());
        assert!(Entry::from_raw(&e.raw()[..10]).is_err());
    }

    #[test]
    fn ttl_and_container_encodings() {
        use ephemeral::*;
        assert_eq!(kind(0), Kind::Void);
        assert_eq!(kind(0x1234), Kind::Normal);
        assert_eq!(kind(CONTAINER_OWNER), Kind::Container);
        let owner = ttl_owner(5000).unwrap();
        assert_eq!(owner as u64, 0xff00_0000_0000_1388);
        assert_eq!(kind(owner), Kind::Ttl(5000));
        assert_eq!(TTL_MAX, 0x0000_00ff_ffff_ffff);
        assert!(ttl_owner(0).is_none());
        assert!(ttl_owner(-1).is_none());
        assert!(ttl_owner(TTL_MAX + 1).is_none());
        assert!(ttl_owner(TTL_MAX).is_some());
    }
}
