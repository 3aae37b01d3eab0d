//! ZooKeeper connection strings: `host:port[,host:port...][/chroot]`.

/// A parsed connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectString {
    /// `host:port` of each server, in the order given.
    pub servers: Vec<String>,
    /// The path every operation is relative to, without a trailing `/`; None for `/`.
    pub chroot: Option<String>,
}

/// Why a connection string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectStringError {
    #[error("no server in the connection string")]
    NoServer,
    #[error("server {0:?} is not host:port")]
    BadServer(String),
    #[error("chroot {0:?} is not an absolute path without empty, `.` or `..` components")]
    BadChroot(String),
}

/// The most servers one connection string may list.
pub const SERVERS_MAX: usize = 255;

impl ConnectString {
    pub fn parse(s: &str) -> Result<ConnectString, ConnectStringError> {
        let (servers, chroot) = match s.find('/') {
            Some(at) => (&s[..at], Some(&s[at..])),
            None => (s, None),
        };
        let chroot = match chroot {
            None | Some("/") => None,
            Some(path) => {
                let valid = path
                    .split('/')
                    .skip(1)
                    .all(|c| !c.is_empty() && c != "." && c != "..");
                if !valid {
                    return Err(ConnectStringError::BadChroot(path.to_owned()));
                }
                Some(path.to_owned())
            }
        };
        let servers: Vec<String> = servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|server| {
                let (host, port) = server
                    .rsplit_once(':')
                    .ok_or_else(|| ConnectStringError::BadServer(server.to_owned()))?;
                if host.is_empty() || port.parse::<u16>().is_err() {
                    return Err(ConnectStringError::BadServer(server.to_owned()));
                }
                Ok(server.to_owned())
            })
            .collect::<Result<_, _>>()?;
        if servers.is_empty() {
            return Err(ConnectStringError::NoServer);
        }
        if servers.len() > SERVERS_MAX {
            return Err(ConnectStringError::BadServer(format!(
                "{} servers, more than {SERVERS_MAX}",
                servers.len()
            )));
        }
        Ok(ConnectString { servers, chroot })
    }

    /// `path` as the server sees it.
    pub(crate) fn server_path(&self, path: &str) -> String {
        match (&self.chroot, path) {
            (None, _) => path.to_owned(),
            (Some(root), "/") => root.clone(),
            (Some(root), _) => format!("{root}{path}"),
        }
    }

    /// A path the server returned, as the client sees it.
    pub(crate) fn client_path(&self, path: &str) -> String {
        match &self.chroot {
            Some(root) => match path.strip_prefix(root.as_str()) {
                Some("") => "/".to_owned(),
                Some(rest) if rest.starts_with('/') => rest.to_owned(),
                // Outside the chroot (a sibling that shares its prefix, say): as it is.
                _ => path.to_owned(),
            },
            None => path.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_and_chroot() {
        let c = ConnectString::parse("h1:2181, h2:2182/app/x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.servers, ["h1:2181", "h2:2182"]);
        assert_eq!(c.chroot.as_deref(), Some("/app/x"));
        assert_eq!(c.server_path("/a"), "/app/x/a");
        assert_eq!(c.server_path("/"), "/app/x");
        assert_eq!(c.client_path("/app/x/a"), "/a");
        assert_eq!(c.client_path("/app/x"), "/");
        assert_eq!(c.client_path("/app/xy"), "/app/xy");
        let plain = ConnectString::parse("[::1]:2181/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain.chroot, None);
        assert_eq!(plain.server_path("/a"), "/a");
    }

    #[test]
    fn bad_strings_are_refused() {
        assert_eq!(ConnectString::parse(""), Err(ConnectStringError::NoServer));
        assert_eq!(
            ConnectString::parse("/app"),
            Err(ConnectStringError::NoServer)
        );
        assert!(matches!(
            ConnectString::parse("h1"),
            Err(ConnectStringError::BadServer(_))
        ));
        assert!(matches!(
            ConnectString::parse("h1:99999"),
            Err(ConnectStringError::BadServer(_))
        ));
        assert!(matches!(
            ConnectString::parse("h1:2181/app/"),
            Err(ConnectStringError::BadChroot(_))
        ));
        assert!(matches!(
            ConnectString::parse("h1:2181/a/../b"),
            Err(ConnectStringError::BadChroot(_))
        ));
    }
}
