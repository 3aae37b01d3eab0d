//! Clients over TLS: the secure client port's settings, its rustls configuration (re-read on
//! SIGHUP), and the `x509` identity a client certificate proves.
//!
//! As ZooKeeper's X509AuthenticationProvider: a client whose certificate the port verified is
//! authenticated as `x509:<subject>`, the subject written as Java's
//! `X500Principal.getName()` writes it (RFC 2253: the last RDN first, `CN=alice,O=example`),
//! so ACLs written for ZooKeeper admit the same clients here. If that subject is the
//! configured super user, the connection also holds `super:<subject>`.

use std::path::PathBuf;

/// Whether the secure client port asks for client certificates (`[client_tls].client_auth`,
/// ZooKeeper's `ssl.clientAuth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// None asked for: every client is anonymous (its `ip` id only).
    None,
    /// Asked for, not required: a client without one connects, anonymous.
    Want,
    /// Required (the default, as ZooKeeper's): a client without a valid one is refused in the
    /// handshake.
    Need,
}

/// `secure_client_addr`'s TLS settings (`[client_tls]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsSettings {
    /// `cert`: the certificate (then any intermediates) the port presents to clients, PEM. It
    /// must name the host clients dial, which ZooKeeper's Java client checks by default.
    pub cert: PathBuf,
    /// `key`: its private key, PEM.
    pub key: PathBuf,
    /// `ca`: the CA certificate(s) that client certificates must chain to, PEM. Required unless
    /// `client_auth` is "none".
    pub ca: Option<PathBuf>,
    /// `client_auth`: whether client certificates are asked for (default "need").
    pub client_auth: ClientAuth,
    /// `superuser`: the certificate subject (RFC 2253, as [`x509_subject`] writes it) that is
    /// the super user, as ZooKeeper's `zookeeper.X509AuthenticationProvider.superUser`.
    pub superuser: Option<String>,
}

#[cfg(feature = "tls")]
pub use imp::*;

#[cfg(feature = "tls")]
mod imp {
    use std::net::IpAddr;
    use std::path::Path;
    use std::sync::Arc;

    use coord_proto::Id;
    use coord_transport::refusals::Refusals;
    use parking_lot::RwLock;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
    use x509_parser::der_parser::asn1_rs::{Tag, ToDer};
    use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

    use super::{ClientAuth, ClientTlsSettings};

    /// A problem with the TLS settings, naming the `[client_tls]` key at fault.
    #[derive(Debug, thiserror::Error)]
    #[error("invalid client_tls.{key}: {message}")]
    pub struct ClientTlsError {
        pub key: &'static str,
        pub message: String,
    }

    fn error(key: &'static str, message: impl Into<String>) -> ClientTlsError {
        ClientTlsError {
            key,
            message: message.into(),
        }
    }

    fn certificates(
        key: &'static str,
        path: &Path,
    ) -> Result<Vec<CertificateDer<'static>>, ClientTlsError> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| error(key, format!("cannot read {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(error(
                key,
                format!("{} holds no PEM certificate", path.display()),
            ));
        }
        Ok(certs)
    }

    /// Reads the files and builds the port's TLS configuration: TLS 1.2 and 1.3 (ZooKeeper's
    /// clients still offer 1.2), rustls's safe defaults otherwise, and no session resumption,
    /// so that a client certificate is verified, expiry included, on every connection.
    pub fn server_config(
        settings: &ClientTlsSettings,
    ) -> Result<rustls::ServerConfig, ClientTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = certificates("cert", &settings.cert)?;
        let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(|e| {
            error(
                "key",
                format!("cannot read {}: {e}", settings.key.display()),
            )
        })?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| error("cert", e.to_string()))?;
        let builder = match (settings.client_auth, &settings.ca) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err(error(
                    "ca",
                    "is required unless client_auth = \"none\": client certificates are \
                     checked against it",
                ))
            }
            (auth, Some(ca)) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in certificates("ca", ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| error("ca", format!("{}: {e}", ca.display())))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if auth == ClientAuth::Want {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| error("ca", format!("{}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            error(
                "key",
                format!("not the certificate's key, or not usable: {e}"),
            )
        })?;
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(NoServerSessionStorage {});
        Ok(config)
    }

    /// The secure client port's TLS: the configuration in use, which SIGHUP replaces.
    pub struct ClientTls {
        settings: ClientTlsSettings,
        config: RwLock<Arc<rustls::ServerConfig>>,
        refusals: Refusals,
        handshakes: Arc<tokio::sync::Semaphore>,
    }

    /// The longest certificate subject (as written, RFC 2253) a client may be: the id goes into
    /// every `auth` ACL it expands and every write it forwards, so it is bounded as digest
    /// credentials are ([`crate::auth::AUTH_DATA_BYTES_MAX`]).
    pub const X509_ID_BYTES_MAX: usize = 1024;

    /// TLS handshakes under way at once on the secure client port, all addresses together,
    /// counted from a connection's ClientHello (a socket that sends nothing holds none); past
    /// it a handshake waits its turn, within the connection's handshake time. Each costs
    /// crypto work before anyone is known (ZooKeeper's
    /// `netty.server.outstandingHandshake.limit`).
    pub const TLS_HANDSHAKES_MAX: usize = 256;

    impl ClientTls {
        /// Reads the files and builds the configuration, as [`server_config`].
        pub fn load(settings: &ClientTlsSettings) -> Result<ClientTls, ClientTlsError> {
            let config = server_config(settings)?;
            Ok(ClientTls {
                settings: settings.clone(),
                config: RwLock::new(Arc::new(config)),
                refusals: Refusals::new("TLS client refused"),
                handshakes: Arc::new(tokio::sync::Semaphore::new(TLS_HANDSHAKES_MAX)),
            })
        }

        /// Reads the files again and uses them for new connections; connections already up
        /// keep what they were verified with. On an error nothing changes.
        pub fn reload(&self) -> Result<(), ClientTlsError> {
            let config = server_config(&self.settings)?;
            *self.config.write() = Arc::new(config);
            Ok(())
        }

        /// The configuration in use now, for one new connection.
        pub fn config(&self) -> Arc<rustls::ServerConfig> {
            self.config.read().clone()
        }

        /// Logs a failed handshake: once a minute per address and kind at warn level, so that
        /// a client retrying in a loop does not fill the log.
        pub fn refused(&self, who: IpAddr, reason: &str) {
            self.refusals.log(who, reason);
        }

        /// The settings the files are read from.
        pub fn settings(&self) -> &ClientTlsSettings {
            &self.settings
        }

        /// The ids a verified client certificate chain (end entity first) proves: `x509` with
        /// its subject, and `super` too for the configured super user; none without a chain, or
        /// for an empty subject (a certificate that names its holder in its alternative names
        /// only). A subject that cannot be read, or is longer than [`X509_ID_BYTES_MAX`], is an
        /// error: ZooKeeper too closes a connection whose certificate authenticates nobody.
        pub fn identities(
            &self,
            chain: Option<&[CertificateDer<'_>]>,
        ) -> Result<Vec<Id>, &'static str> {
            let Some(end_entity) = chain.and_then(|chain| chain.first()) else {
                return Ok(Vec::new());
            };
            let subject =
                x509_subject(end_entity).ok_or("the certificate's subject is unreadable")?;
            if subject.is_empty() {
                return Ok(Vec::new());
            }
            if subject.len() > X509_ID_BYTES_MAX {
                return Err("the certificate's subject is too long");
            }
            let mut ids = Vec::with_capacity(2);
            if self.settings.superuser.as_deref() == Some(subject.as_str()) {
                ids.push(Id::new("super", subject.clone()));
            }
            ids.push(Id::new("x509", subject));
            Ok(ids)
        }

        /// A permit to run one TLS handshake, once fewer than [`TLS_HANDSHAKES_MAX`] run.
        pub async fn handshake_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
            self.handshakes.clone().acquire_owned().await.ok()
        }
    }

    /// A certificate's subject as Java's `X500Principal.getName()` (RFC 2253) writes it.
    pub fn x509_subject(cert: &CertificateDer<'_>) -> Option<String> {
        let (_, cert) = X509Certificate::from_der(cert.as_ref()).ok()?;
        rfc2253(cert.subject())
    }

    /// The keywords RFC 2253 names, which Java uses; any other type is its dotted OID.
    fn keyword(oid: &str) -> Option<&'static str> {
        Some(match oid {
            "2.5.4.3" => "CN",
            "2.5.4.6" => "C",
            "2.5.4.7" => "L",
            "2.5.4.8" => "ST",
            "2.5.4.9" => "STREET",
            "2.5.4.10" => "O",
            "2.5.4.11" => "OU",
            "0.9.2342.19200300.100.1.1" => "UID",
            "0.9.2342.19200300.100.1.25" => "DC",
            _ => return None,
        })
    }

    fn rfc2253(name: &X509Name<'_>) -> Option<String> {
        let mut out = String::new();
        // RFC 2253 writes the last RDN of the sequence first.
        let rdns: Vec<_> = name.iter().collect();
        for (i, rdn) in rdns.iter().rev().enumerate() {
            if i > 0 {
                out.push(',');
            }
            for (j, attribute) in rdn.iter().enumerate() {
                if j > 0 {
                    out.push('+');
                }
                let oid = attribute.attr_type().to_id_string();
                let value = attribute.attr_value();
                match (keyword(&oid), text(value.tag(), value.data)) {
                    (Some(keyword), Some(text)) => {
                        out.push_str(keyword);
                        out.push('=');
                        escape_into(&mut out, text);
                    }
                    // A dotted type, or a value that is not a string: `#` and the hex of the
                    // value's DER encoding.
                    (keyword, _) => {
                        out.push_str(keyword.unwrap_or(&oid));
                        out.push_str("=#");
                        for byte in value.to_der_vec().ok()? {
                            out.push_str(&format!("{byte:02x}"));
                        }
                    }
                }
            }
        }
        Some(out)
    }

    /// A value's text as Java 17's `AVA.toRFC2253String` reads it: the string types it writes
    /// as text have their bytes decoded as UTF-8 (so a BMPString of ASCII reads `\00A\00B`, as
    /// in Java); None for any other type (UniversalString included), which is written as
    /// `#hex`. Bytes that are not UTF-8 are None too, so written as `#hex`: Java replaces them
    /// with U+FFFD, which would give different certificates one identity.
    fn text(tag: Tag, data: &[u8]) -> Option<&str> {
        match tag {
            Tag::Utf8String
            | Tag::PrintableString
            | Tag::Ia5String
            | Tag::T61String
            | Tag::GeneralString
            | Tag::BmpString => std::str::from_utf8(data).ok(),
            _ => None,
        }
    }

    /// Java's `AVA.toRFC2253String`: a backslash before `,=+<>#;"\`, NUL as `\00`, then a
    /// backslash before every space or carriage return of the leading and trailing runs.
    fn escape_into(out: &mut String, text: &str) {
        let mut escaped: Vec<char> = Vec::with_capacity(text.len() + 4);
        for c in text.chars() {
            match c {
                ',' | '=' | '+' | '<' | '>' | '#' | ';' | '"' | '\\' => {
                    escaped.push('\\');
                    escaped.push(c);
                }
                '\0' => escaped.extend(['\\', '0', '0']),
                c => escaped.push(c),
            }
        }
        let blank = |c: &char| *c == ' ' || *c == '\r';
        let lead = escaped.iter().take_while(|c| blank(c)).count();
        let trail = escaped.len() - escaped.iter().rev().take_while(|c| blank(c)).count();
        for (i, c) in escaped.into_iter().enumerate() {
            if i < lead || i >= trail {
                out.push('\\');
            }
            out.push(c);
        }
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;
    use coord_proto::Id;

    /// Each expected subject is what Java 17's `X500Principal.getName()` printed for the same
    /// certificate (OpenJDK 17.0.15).
    #[test]
    fn subjects_read_as_java_writes_them() {
        use rcgen::{DnType, DnValue};
        let oid = |arcs: &[u64]| DnType::CustomDnType(arcs.to_vec());
        let ia5 = |text: &str| DnValue::Ia5String(text.try_into().unwrap());
        let cases: Vec<(Vec<(DnType, DnValue)>, &str)> = vec![
            (
                vec![
                    (DnType::CountryName, "NL".into()),
                    (DnType::OrganizationName, "Example, Inc.".into()),
                    (DnType::CommonName, " alice#1 ".into()),
                ],
                "CN=\\ alice\\#1\\ ,O=Example\\, Inc.,C=NL",
            ),
            (
                vec![(DnType::CommonName, DnValue::Utf8String("  bob \r".into()))],
                "CN=\\ \\ bob\\ \\\r",
            ),
            (vec![(DnType::CommonName, "a\0b".into())], "CN=a\\00b"),
            (vec![(DnType::CommonName, "   ".into())], "CN=\\ \\ \\ "),
            (vec![(DnType::CommonName, "x\\ ".into())], "CN=x\\\\\\ "),
            (
                vec![(
                    DnType::CommonName,
                    DnValue::BmpString("Zo".try_into().unwrap()),
                )],
                "CN=\\00Z\\00o",
            ),
            (
                vec![(
                    DnType::CommonName,
                    DnValue::TeletexString("tele".try_into().unwrap()),
                )],
                "CN=tele",
            ),
            (
                vec![(
                    DnType::CommonName,
                    DnValue::UniversalString("uni\u{e9}".try_into().unwrap()),
                )],
                "CN=#1c10000000750000006e00000069000000e9",
            ),
            (
                vec![(DnType::CommonName, "#a=b<c>;d\"e\\f+g,h".into())],
                "CN=\\#a\\=b\\<c\\>\\;d\\\"e\\\\f\\+g\\,h",
            ),
            (
                vec![(
                    DnType::CommonName,
                    DnValue::Utf8String("Jos\u{e9} \u{1f600}".into()),
                )],
                "CN=Jos\u{e9} \u{1f600}",
            ),
            (
                vec![
                    (oid(&[0, 9, 2342, 19200300, 100, 1, 25]), ia5("com")),
                    (oid(&[1, 2, 840, 113549, 1, 9, 1]), ia5("a@b.c")),
                    (
                        DnType::CommonName,
                        DnValue::PrintableString("x y".try_into().unwrap()),
                    ),
                ],
                "CN=x y,1.2.840.113549.1.9.1=#16056140622e63,DC=com",
            ),
            (
                vec![
                    (DnType::OrganizationalUnitName, "ou1".into()),
                    (DnType::LocalityName, "L".into()),
                    (DnType::StateOrProvinceName, "ST".into()),
                    (oid(&[2, 5, 4, 9]), "street".into()),
                    (oid(&[0, 9, 2342, 19200300, 100, 1, 1]), "uid7".into()),
                    (oid(&[2, 5, 4, 5]), "serial".into()),
                ],
                "2.5.4.5=#0c0673657269616c,UID=uid7,STREET=street,ST=ST,L=L,OU=ou1",
            ),
        ];
        for (names, java) in cases {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            for (kind, value) in names {
                params.distinguished_name.push(kind, value);
            }
            let cert = params
                .self_signed(&rcgen::KeyPair::generate().unwrap())
                .unwrap();
            let der = rustls_pki_types::CertificateDer::from(cert.der().to_vec());
            assert_eq!(x509_subject(&der).unwrap(), java);
        }
    }

    /// Where Java would write U+FFFD for bytes that are not UTF-8 (and so give two
    /// certificates one identity), the value is written as `#hex`, unique to its bytes.
    #[test]
    fn a_value_that_is_not_utf8_is_written_as_hex() {
        use rcgen::{DnType, DnValue};
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            DnValue::BmpString("Zo\u{eb}".try_into().unwrap()),
        );
        let cert = params
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let der = rustls_pki_types::CertificateDer::from(cert.der().to_vec());
        assert_eq!(x509_subject(&der).unwrap(), "CN=#1e06005a006f00eb");
    }

    #[allow(clippy::unwrap_used)]
    fn certificate_with_subject(names: &[(rcgen::DnType, &str)]) -> rcgen::Certificate {
        let mut params = rcgen::CertificateParams::new(vec!["client".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in names {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap()
    }

    #[test]
    fn identities_of_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.path().join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        let tls = ClientTls::load(&ClientTlsSettings {
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
            ca: None,
            client_auth: ClientAuth::None,
            superuser: Some("CN=root".into()),
        })
        .unwrap();
        let ids = |cert: &rcgen::Certificate| {
            let der = rustls_pki_types::CertificateDer::from(cert.der().to_vec());
            tls.identities(Some(&[der]))
        };
        assert_eq!(tls.identities(None).unwrap(), vec![]);
        assert_eq!(
            ids(&certificate_with_subject(&[(
                rcgen::DnType::CommonName,
                "alice"
            )]))
            .unwrap(),
            vec![Id::new("x509", "CN=alice")]
        );
        assert_eq!(
            ids(&certificate_with_subject(&[(
                rcgen::DnType::CommonName,
                "root"
            )]))
            .unwrap(),
            vec![Id::new("super", "CN=root"), Id::new("x509", "CN=root")]
        );
        // Named in its alternative names only: anonymous, as without a certificate.
        assert_eq!(ids(&certificate_with_subject(&[])).unwrap(), vec![]);
        let long = "x".repeat(X509_ID_BYTES_MAX);
        assert!(ids(&certificate_with_subject(&[(
            rcgen::DnType::CommonName,
            &long
        )]))
        .is_err());
    }
}
