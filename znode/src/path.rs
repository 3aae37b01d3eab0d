//! Validated znode paths (`PathUtils.validatePath`).

use std::fmt;

use crate::Error;

/// A znode path that passed ZooKeeper's `PathUtils.validatePath`: absolute, no empty, `.` or
/// `..` components, no trailing `/` (except the root), and none of the characters ZooKeeper
/// forbids (NUL, controls, U+007F..U+009F, U+D800..U+F8FF, U+FFF0..U+FFFF, and anything outside
/// the Basic Multilingual Plane, which Java sees as surrogates).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ZPath(Box<str>);

impl ZPath {
    /// The root, `/`.
    pub fn root() -> Self {
        ZPath("/".into())
    }

    /// Parses a complete path.
    pub fn parse(path: &str) -> Result<ZPath, Error> {
        validate(path, path.len())?;
        Ok(ZPath(path.into()))
    }

    /// Parses the path of a sequential create, to which a 10-digit counter will be appended:
    /// like ZooKeeper's `validatePath(path, true)` a trailing `/` is then fine.
    pub fn parse_sequential_prefix(path: &str) -> Result<(), Error> {
        // ZooKeeper validates `path + "1"`; the appended digit ends the last component.
        let mut probe = String::with_capacity(path.len() + 1);
        probe.push_str(path);
        probe.push('1');
        validate(&probe, path.len())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent's path, or `None` for the root.
    pub fn parent(&self) -> Option<&str> {
        parent_of(&self.0)
    }

    /// The last component ("" for the root).
    pub fn name(&self) -> &str {
        match self.0.rfind('/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }
}

/// The parent of a valid path, or `None` for the root.
pub(crate) fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// Number of components: 0 for the root, 1 for `/a`, 2 for `/a/b`.
pub(crate) fn depth_of(path: &str) -> u32 {
    if path == "/" {
        0
    } else {
        path.bytes().filter(|&b| b == b'/').count() as u32
    }
}

fn validate(path: &str, reported_len: usize) -> Result<(), Error> {
    let fail = |reason: &'static str| Error::InvalidPath {
        path: path[..reported_len.min(path.len())].to_string(),
        reason,
    };
    let bytes = path.as_bytes();
    if bytes.is_empty() {
        return Err(fail("path length must be > 0"));
    }
    if bytes[0] != b'/' {
        return Err(fail("path must start with / character"));
    }
    if bytes.len() == 1 {
        return Ok(());
    }
    if bytes[bytes.len() - 1] == b'/' {
        return Err(fail("path must not end with / character"));
    }
    let mut last = '/';
    for (i, c) in path.char_indices().skip(1) {
        // '.', '/' and NUL are ASCII, so byte neighbours are character neighbours here.
        let next_is_end_or_slash = || i + 1 == bytes.len() || bytes[i + 1] == b'/';
        if c == '\0' {
            return Err(fail("null character not allowed"));
        } else if c == '/' && last == '/' {
            return Err(fail("empty node name specified"));
        } else if c == '.' && last == '.' {
            if i >= 2 && bytes[i - 2] == b'/' && next_is_end_or_slash() {
                return Err(fail("relative paths not allowed"));
            }
        } else if c == '.' {
            if bytes[i - 1] == b'/' && next_is_end_or_slash() {
                return Err(fail("relative paths not allowed"));
            }
        } else if is_forbidden(c) {
            return Err(fail("invalid character"));
        }
        last = c;
    }
    Ok(())
}

fn is_forbidden(c: char) -> bool {
    let u = c as u32;
    (0x01..=0x1f).contains(&u)
        || (0x7f..=0x9f).contains(&u)
        || (0xd800..=0xf8ff).contains(&u)
        || (0xfff0..=0xffff).contains(&u)
        // Java strings are UTF-16: a supplementary character is a surrogate pair, forbidden above.
        || u > 0xffff
}

impl fmt::Debug for ZPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ZPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ZPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_zookeeper_accepts() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/a.b",
            "/..a",
            "/a..",
            "/a/.b/c",
            "/a/b./c",
            "/...",
            "/zookeeper",
            "/é",
            "/a b",
        ] {
            assert!(ZPath::parse(p).is_ok(), "{p:?} should be valid");
        }
    }

    #[test]
    fn rejects_what_zookeeper_rejects() {
        for p in [
            "",
            "a",
            "a/b",
            "/a/",
            "//a",
            "/a//b",
            "/a/./b",
            "/a/../b",
            "/.",
            "/..",
            "/a/.",
            "/a/..",
            "/a\0b",
            "/a\u{1}",
            "/a\u{1f}",
            "/a\u{7f}",
            "/a\u{9f}",
            "/a\u{e000}",
            "/a\u{f8ff}",
            "/a\u{fff0}",
            "/a\u{ffff}",
            "/a\u{1f600}",
        ] {
            let err = ZPath::parse(p).unwrap_err();
            assert_eq!(err.code(), coord_proto::ErrorCode::BadArguments, "{p:?}");
        }
    }

    #[test]
    fn sequential_prefix_may_end_in_slash() {
        assert!(ZPath::parse_sequential_prefix("/a/").is_ok());
        assert!(ZPath::parse_sequential_prefix("/a/lock-").is_ok());
        assert!(ZPath::parse_sequential_prefix("/").is_ok());
        assert!(ZPath::parse_sequential_prefix("/a//").is_err());
        assert!(ZPath::parse_sequential_prefix("/a/.").is_ok()); // "/a/.1" is a fine name
        assert!(ZPath::parse_sequential_prefix("a").is_err());
        assert!(ZPath::parse_sequential_prefix("").is_err());
    }

    #[test]
    fn parent_name_and_depth() {
        let p = ZPath::parse("/a/b").unwrap();
        assert_eq!(p.parent(), Some("/a"));
        assert_eq!(p.name(), "b");
        assert_eq!(ZPath::parse("/a").unwrap().parent(), Some("/"));
        assert_eq!(ZPath::root().parent(), None);
        assert_eq!(depth_of("/"), 0);
        assert_eq!(depth_of("/a"), 1);
        assert_eq!(depth_of("/a/b"), 2);
    }
}
