//! Authentication schemes and ACL checks: `world`, `auth`, `digest`, `ip` and the super user,
//! as ZooKeeper's `ZooKeeperServer.checkACL`, `PrepRequestProcessor.fixupACL`,
//! `DigestAuthenticationProvider` and `IPAuthenticationProvider` define them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use base64::Engine as _;
use coord_proto::{Acl, Id};
use sha1::{Digest as _, Sha1};

use crate::Error;

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The session the request came on (0 for none).
    pub session_id: i64,
    /// The connection's authenticated ids, including its `("ip", "<addr>")` id.
    pub ids: &'a [Id],
    /// Whether the connection authenticated as the super user (the server's superDigest).
    pub is_super: bool,
}

impl Caller<'_> {
    /// A caller with no ids that is not the super user.
    pub const ANONYMOUS: Caller<'static> = Caller {
        session_id: 0,
        ids: &[],
        is_super: false,
    };

    fn is_super(&self) -> bool {
        // DigestAuthenticationProvider adds a ("super", "") id for the superDigest user.
        self.is_super || self.ids.iter().any(|id| id.scheme == "super")
    }
}

/// `DigestAuthenticationProvider.generateDigest`: `"user:password"` becomes
/// `"user:" + base64(sha1("user:password"))`.
pub fn digest_id(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    let mut out = String::with_capacity(user.len() + 29);
    out.push_str(user);
    out.push(':');
    base64::engine::general_purpose::STANDARD.encode_string(hash, &mut out);
    out
}

/// Whether `caller` holds `perm` on a node with `acl` (`ZooKeeperServer.checkACL`).
pub fn is_allowed(acl: &[Acl], perm: i32, caller: &Caller<'_>) -> bool {
    if acl.is_empty() || caller.is_super() {
        return true;
    }
    acl.iter().any(|entry| {
        if entry.perms & perm == 0 {
            return false;
        }
        let id = &entry.id;
        match id.scheme.as_str() {
            "world" => id.id == "anyone",
            "digest" => caller
                .ids
                .iter()
                .any(|c| c.scheme == "digest" && c.id == id.id),
            "ip" => caller
                .ids
                .iter()
                .any(|c| c.scheme == "ip" && ip_matches(&c.id, &id.id)),
            // X509AuthenticationProvider.matches: the certificate subject, exactly.
            "x509" => caller
                .ids
                .iter()
                .any(|c| c.scheme == "x509" && c.id == id.id),
            _ => false,
        }
    })
}

pub(crate) fn check(acl: &[Acl], perm: i32, caller: &Caller<'_>, path: &str) -> Result<(), Error> {
    if is_allowed(acl, perm, caller) {
        Ok(())
    } else {
        Err(Error::NoAuth(path.to_string()))
    }
}

/// The most entries one ACL list may hold, as the request gives it and again after `auth`
/// entries are expanded into one entry per authenticated id. ZooKeeper has no such bound (only
/// jute.maxbuffer); it keeps the work and the stored list of one request small.
pub const ACL_ENTRIES_MAX: usize = 1024;

/// `PrepRequestProcessor.fixupACL`: drops duplicates (the first of equal entries stays, as
/// `removeDuplicates`), expands `auth` to the caller's authenticated (non-ip) ids, and rejects
/// empty lists, unknown schemes and malformed ids. Lists longer than [`ACL_ENTRIES_MAX`], before
/// or after the expansion, are invalid too. Linear in the list times the caller's ids.
pub fn fixup_acl(path: &str, acl: &[Acl], caller: &Caller<'_>) -> Result<Vec<Acl>, Error> {
    let invalid = || Error::InvalidAcl(path.to_string());
    if acl.is_empty() || acl.len() > ACL_ENTRIES_MAX {
        return Err(invalid());
    }
    let mut seen: HashSet<&Acl> = HashSet::with_capacity(acl.len());
    let mut out = Vec::with_capacity(acl.len());
    for a in acl {
        if !seen.insert(a) {
            continue;
        }
        match a.id.scheme.as_str() {
            "world" if a.id.id == "anyone" => out.push(a.clone()),
            "auth" => {
                // Only providers that authenticate (digest and x509; not ip, nor the super
                // id, which has no provider) contribute ids.
                let mut any = false;
                let authenticated = |id: &&Id| id.scheme == "digest" || id.scheme == "x509";
                for id in caller.ids.iter().filter(authenticated) {
                    any = true;
                    if out.len() >= ACL_ENTRIES_MAX {
                        return Err(invalid());
                    }
                    out.push(Acl {
                        perms: a.perms,
                        id: id.clone(),
                    });
                }
                if !any {
                    return Err(invalid());
                }
            }
            "digest" if is_valid_digest_id(&a.id.id) => out.push(a.clone()),
            "ip" if is_valid_ip_id(&a.id.id) => out.push(a.clone()),
            "x509" if is_valid_x509_id(&a.id.id) => out.push(a.clone()),
            _ => return Err(invalid()),
        }
        if out.len() > ACL_ENTRIES_MAX {
            return Err(invalid());
        }
    }
    Ok(out)
}

/// Whether `id` can be an `x509` ACL id: a distinguished name, `type=value` pairs separated by
/// unescaped `,` or `+` (ZooKeeper asks `new X500Principal(id)`). The check is loose; an id
/// no certificate has admits nobody.
pub fn is_valid_x509_id(id: &str) -> bool {
    let mut part = String::new();
    let mut escaped = false;
    let mut parts = Vec::new();
    for c in id.chars() {
        match c {
            _ if escaped => {
                part.push(c);
                escaped = false;
            }
            '\\' => {
                part.push(c);
                escaped = true;
            }
            ',' | '+' => parts.push(std::mem::take(&mut part)),
            _ => part.push(c),
        }
    }
    parts.push(part);
    !escaped
        && parts.iter().all(|p| {
            p.split_once('=')
                .is_some_and(|(kind, _)| !kind.trim().is_empty())
        })
}

/// `DigestAuthenticationProvider.isValid`: Java's `id.split(":").length == 2` (trailing empty
/// parts dropped).
fn is_valid_digest_id(id: &str) -> bool {
    let mut parts: Vec<&str> = id.split(':').collect();
    while parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    parts.len() == 2
}

/// `IPAuthenticationProvider.isValid`: an address with an optional `/bits` mask.
fn is_valid_ip_id(id: &str) -> bool {
    parse_masked(id).is_some()
}

/// Parses `addr[/bits]` into the masked address bytes and the mask length.
fn parse_masked(expr: &str) -> Option<(Vec<u8>, usize)> {
    let (addr, bits) = match expr.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (expr, None),
    };
    let mut bytes = addr_bytes(addr)?;
    let max = bytes.len() * 8;
    let bits = match bits {
        Some(b) => {
            let b: i32 = b.parse().ok()?;
            usize::try_from(b).ok().filter(|&b| b <= max)?
        }
        None => max,
    };
    mask(&mut bytes, bits);
    Some((bytes, bits))
}

fn addr_bytes(addr: &str) -> Option<Vec<u8>> {
    if addr.contains(':') {
        let v6: std::net::Ipv6Addr = addr.parse().ok()?;
        return Some(v6.octets().to_vec());
    }
    // As IPAuthenticationProvider.v4addr2Bytes: four Integer.parseInt parts in 0..=255.
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    parts
        .iter()
        .map(|p| p.parse::<i32>().ok().and_then(|v| u8::try_from(v).ok()))
        .collect()
}

fn mask(bytes: &mut [u8], bits: usize) {
    for (i, b) in bytes.iter_mut().enumerate() {
        let keep = bits.saturating_sub(i * 8).min(8);
        *b &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
    }
}

/// `IPAuthenticationProvider.matches`: the client address equals the ACL address under its mask.
fn ip_matches(client: &str, acl_expr: &str) -> bool {
    let Some((acl_addr, bits)) = parse_masked(acl_expr) else {
        return false;
    };
    let Some(mut remote) = addr_bytes(client) else {
        return false;
    };
    if remote.len() != acl_addr.len() {
        return false;
    }
    mask(&mut remote, bits);
    remote == acl_addr
}

/// getACL for a caller without ADMIN: digest hashes are hidden as `user:x` (ZOOKEEPER-1392).
pub(crate) fn redact(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            if a.id.scheme == "digest" {
                let user = a.id.id.split(':').next().unwrap_or("");
                Acl {
                    perms: a.perms,
                    id: Id::new("digest", format!("{user}:x")),
                }
            } else {
                a.clone()
            }
        })
        .collect()
}

/// ACL lists stored once and referenced by index from nodes, like `ReferenceCountedACLCache`.
#[derive(Debug, Default, Clone)]
pub(crate) struct AclCache {
    /// index -> (list, number of nodes using it). Invariant: every count > 0.
    by_index: BTreeMap<u32, (Arc<[Acl]>, u64)>,
    by_list: HashMap<Arc<[Acl]>, u32>,
    next: u32,
}

impl AclCache {
    /// Takes one reference to `acl`, adding it if new.
    pub fn intern(&mut self, acl: &[Acl]) -> u32 {
        if let Some(&index) = self.by_list.get(acl) {
            if let Some(entry) = self.by_index.get_mut(&index) {
                entry.1 += 1;
                return index;
            }
        }
        while self.by_index.contains_key(&self.next) {
            self.next = self.next.wrapping_add(1);
        }
        let index = self.next;
        self.next = self.next.wrapping_add(1);
        let list: Arc<[Acl]> = acl.into();
        self.by_list.insert(list.clone(), index);
        self.by_index.insert(index, (list, 1));
        index
    }

    /// Drops one reference to `index`.
    pub fn release(&mut self, index: u32) {
        let Some(entry) = self.by_index.get_mut(&index) else {
            panic!("ACL index {index} released but not held");
        };
        entry.1 -= 1;
        if entry.1 == 0 {
            if let Some((list, _)) = self.by_index.remove(&index) {
                self.by_list.remove(&list);
            }
        }
    }

    pub fn get(&self, index: u32) -> Arc<[Acl]> {
        match self.by_index.get(&index) {
            Some((list, _)) => list.clone(),
            None => panic!("node refers to unknown ACL index {index}"),
        }
    }

    #[cfg(test)]
    pub fn contains(&self, index: u32) -> bool {
        self.by_index.contains_key(&index)
    }

    /// Every (index, list), in index order (for snapshots).
    pub fn entries(&self) -> impl Iterator<Item = (u32, &Arc<[Acl]>)> {
        self.by_index.iter().map(|(i, (l, _))| (*i, l))
    }

    /// Rebuilds from snapshot lists and the usage count of each index.
    pub fn from_parts(lists: Vec<(u32, Arc<[Acl]>)>, usage: &HashMap<u32, u64>, next: u32) -> Self {
        let mut cache = AclCache {
            next,
            ..AclCache::default()
        };
        for (index, list) in lists {
            if let Some(&count) = usage.get(&index) {
                cache.by_list.insert(list.clone(), index);
                cache.by_index.insert(index, (list, count));
            }
        }
        cache
    }

    pub fn next_index(&self) -> u32 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coord_proto::perms;

    fn acl(perms: i32, scheme: &str, id: &str) -> Acl {
        Acl {
            perms,
            id: Id::new(scheme, id),
        }
    }

    #[test]
    fn digest_matches_zookeeper_generate_digest() {
        // Values from ZooKeeper's documentation and DigestAuthenticationProviderTest.
        assert_eq!(
            digest_id("super:test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
        assert_eq!(digest_id("user:pass").split(':').count(), 2);
    }

    #[test]
    fn world_digest_ip_and_super_checks() {
        let me = [
            Id::new("ip", "10.0.0.7"),
            Id::new("digest", digest_id("bob:pw")),
        ];
        let caller = Caller {
            session_id: 1,
            ids: &me,
            is_super: false,
        };
        assert!(is_allowed(&Acl::open_unsafe(), perms::WRITE, &caller));
        assert!(!is_allowed(&Acl::read_unsafe(), perms::WRITE, &caller));
        let bob = acl(perms::ALL, "digest", &digest_id("bob:pw"));
        let eve = acl(perms::ALL, "digest", &digest_id("eve:pw"));
        assert!(is_allowed(
            std::slice::from_ref(&bob),
            perms::ADMIN,
            &caller
        ));
        assert!(!is_allowed(
            std::slice::from_ref(&eve),
            perms::READ,
            &caller
        ));
        assert!(is_allowed(
            &[acl(perms::READ, "ip", "10.0.0.0/8")],
            perms::READ,
            &caller
        ));
        assert!(is_allowed(
            &[acl(perms::READ, "ip", "10.0.0.7")],
            perms::READ,
            &caller
        ));
        assert!(!is_allowed(
            &[acl(perms::READ, "ip", "10.0.0.8")],
            perms::READ,
            &caller
        ));
        assert!(!is_allowed(
            &[acl(perms::READ, "ip", "11.0.0.0/8")],
            perms::READ,
            &caller
        ));
        assert!(is_allowed(
            &[acl(perms::READ, "ip", "0.0.0.0/0")],
            perms::READ,
            &caller
        ));
        let sup = Caller {
            is_super: true,
            ..Caller::ANONYMOUS
        };
        assert!(is_allowed(std::slice::from_ref(&eve), perms::ADMIN, &sup));
        let super_id = [Id::new("super", "")];
        let sup2 = Caller {
            ids: &super_id,
            ..Caller::ANONYMOUS
        };
        assert!(is_allowed(std::slice::from_ref(&eve), perms::ADMIN, &sup2));
        assert!(!is_allowed(
            std::slice::from_ref(&eve),
            perms::ADMIN,
            &Caller::ANONYMOUS
        ));
    }

    #[test]
    fn x509_admits_exactly_its_subject() {
        let alice = [
            Id::new("ip", "127.0.0.1"),
            Id::new("x509", "CN=alice,O=example"),
        ];
        let caller = Caller {
            ids: &alice,
            ..Caller::ANONYMOUS
        };
        let only = |id: &str| [acl(perms::READ, "x509", id)];
        assert!(is_allowed(
            &only("CN=alice,O=example"),
            perms::READ,
            &caller
        ));
        for other in ["CN=alice", "CN=bob,O=example", "cn=alice,o=example"] {
            assert!(!is_allowed(&only(other), perms::READ, &caller), "{other}");
        }
        // A digest id with the same text is another identity.
        let digest = [Id::new("digest", "CN=alice,O=example")];
        let digest_caller = Caller {
            ids: &digest,
            ..Caller::ANONYMOUS
        };
        assert!(!is_allowed(
            &only("CN=alice,O=example"),
            perms::READ,
            &digest_caller
        ));
        // `auth` expands to the certificate identity, not to the address nor to `super`.
        let with_super = [
            Id::new("ip", "127.0.0.1"),
            Id::new("super", "CN=root"),
            Id::new("x509", "CN=root"),
        ];
        let root = Caller {
            ids: &with_super,
            ..Caller::ANONYMOUS
        };
        assert_eq!(
            fixup_acl("/p", &[acl(31, "auth", "")], &root).unwrap(),
            vec![acl(31, "x509", "CN=root")]
        );
    }

    #[test]
    fn x509_ids_are_distinguished_names() {
        for id in [
            "CN=alice",
            "CN=alice,O=example",
            "CN=a\\,b,O=x",
            "CN=a+UID=7",
        ] {
            assert!(is_valid_x509_id(id), "{id}");
        }
        for id in ["", "alice", "CN=alice,", "=alice", "CN=alice\\"] {
            assert!(!is_valid_x509_id(id), "{id}");
        }
    }

    #[test]
    fn ipv6_masks() {
        assert!(ip_matches("2001:db8::1", "2001:db8::/32"));
        assert!(!ip_matches("2001:db9::1", "2001:db8::/32"));
        assert!(!ip_matches("10.0.0.1", "2001:db8::/32"));
    }

    #[test]
    fn fixup_validates_and_expands() {
        let me = [Id::new("ip", "1.2.3.4"), Id::new("digest", "bob:hash")];
        let caller = Caller {
            session_id: 1,
            ids: &me,
            is_super: false,
        };
        let code = |acl: &[Acl], c: &Caller| fixup_acl("/p", acl, c).unwrap_err().code();
        use coord_proto::ErrorCode::InvalidAcl;
        assert_eq!(code(&[], &caller), InvalidAcl);
        assert_eq!(code(&[acl(1, "world", "someone")], &caller), InvalidAcl);
        assert_eq!(code(&[acl(1, "x509", "CN")], &caller), InvalidAcl);
        assert_eq!(code(&[acl(1, "digest", "nocolon")], &caller), InvalidAcl);
        assert_eq!(code(&[acl(1, "digest", "a:b:c")], &caller), InvalidAcl);
        assert_eq!(code(&[acl(1, "ip", "1.2.3")], &caller), InvalidAcl);
        assert_eq!(code(&[acl(1, "ip", "1.2.3.4/33")], &caller), InvalidAcl);
        assert_eq!(code(&[acl(1, "ip", "1.2.3.256")], &caller), InvalidAcl);
        assert_eq!(code(&[acl(1, "auth", "")], &Caller::ANONYMOUS), InvalidAcl);
        let ip_only = [Id::new("ip", "1.2.3.4")];
        let ip_caller = Caller {
            ids: &ip_only,
            ..Caller::ANONYMOUS
        };
        assert_eq!(code(&[acl(1, "auth", "")], &ip_caller), InvalidAcl);
        assert_eq!(
            fixup_acl("/p", &[acl(5, "auth", "")], &caller).unwrap(),
            vec![acl(5, "digest", "bob:hash")]
        );
        let long: Vec<Acl> = (0..=ACL_ENTRIES_MAX)
            .map(|i| acl(1, "ip", &format!("10.0.{}.{}", i / 256, i % 256)))
            .collect();
        assert_eq!(code(&long, &caller), InvalidAcl);
        assert!(fixup_acl("/p", &long[..ACL_ENTRIES_MAX], &caller).is_ok());
        // `auth` expands per id: 600 entries times 2 digest ids is over the bound.
        let two = [Id::new("digest", "a:x"), Id::new("digest", "b:y")];
        let two_caller = Caller {
            ids: &two,
            ..Caller::ANONYMOUS
        };
        let auths: Vec<Acl> = (1..=600).map(|p| acl(p, "auth", "")).collect();
        assert_eq!(code(&auths, &two_caller), InvalidAcl);
        assert_eq!(
            fixup_acl("/p", &auths[..512], &two_caller).unwrap().len(),
            1024
        );
        // Duplicates: the first stays, order kept.
        let dups = [
            acl(1, "ip", "1.1.1.1"),
            acl(2, "ip", "1.1.1.1"),
            acl(1, "ip", "1.1.1.1"),
        ];
        assert_eq!(fixup_acl("/p", &dups, &caller).unwrap(), dups[..2].to_vec());
        let dup = [acl(1, "ip", "1.2.3.0/24"), acl(1, "ip", "1.2.3.0/24")];
        assert_eq!(fixup_acl("/p", &dup, &caller).unwrap().len(), 1);
        assert!(fixup_acl("/p", &[acl(1, "digest", "a:b:")], &caller).is_ok());
        assert!(fixup_acl("/p", &[acl(1, "ip", "::1/128")], &caller).is_ok());
    }

    #[test]
    fn cache_shares_and_releases() {
        let mut c = AclCache::default();
        let a = c.intern(&Acl::open_unsafe());
        let b = c.intern(&Acl::open_unsafe());
        assert_eq!(a, b);
        let r = c.intern(&Acl::read_unsafe());
        assert_ne!(a, r);
        c.release(a);
        assert!(c.contains(a));
        c.release(a);
        assert!(!c.contains(a));
        assert_eq!(&*c.get(r), &Acl::read_unsafe()[..]);
    }
}
