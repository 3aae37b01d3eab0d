//! Member identity for the QUIC transport: certificates signed by the ensemble's CA, each naming
//! one member of one ensemble.
//!
//! A member's certificate carries the DNS name `member-<id>.<ensemble>.coord` in its subject
//! alternative names ([`member_name`]). A dialer accepts only the certificate that names the
//! member it dials; an acceptor learns who dialed from the client certificate's name, never
//! from anything the dialer says. So a holder of member 2's certificate can act as member 2 and
//! no other, and a certificate for another ensemble (whose name differs) is nobody here.

use std::path::Path;
use std::sync::Arc;

use std::collections::BTreeSet;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::PeerId;

/// The ALPN protocol of coord's peer streams.
pub(crate) const ALPN: &[u8] = b"coord-peer/1";

/// Why TLS credentials cannot be used. Each names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} holds no {what}")]
    Empty { path: String, what: &'static str },
    #[error("the ensemble name {0:?} is not a DNS label (letters, digits and '-', at most 63)")]
    BadEnsembleName(String),
    #[error("the certificate does not belong to its key, or the key is not usable: {0}")]
    KeyMismatch(String),
    #[error("this member's certificate is not valid as {name}: {reason}")]
    NotThisMember { name: String, reason: String },
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// The name a member's certificate must carry.
pub fn member_name(ensemble: &str, id: PeerId) -> String {
    format!("member-{}.{ensemble}.coord", id.0)
}

/// A member's TLS credentials: the ensemble's CA, and its own certificate chain and key.
#[derive(Debug)]
pub struct Credentials {
    pub ca: Vec<CertificateDer<'static>>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Credentials {
    fn clone(&self) -> Self {
        Credentials {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

fn read_err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Read {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.display().to_string(),
            what: "PEM certificate",
        });
    }
    Ok(certs)
}

impl Credentials {
    /// Reads PEM files: the CA certificate(s), this member's certificate (and any intermediates
    /// after it), and its private key.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Credentials, TlsError> {
        Ok(Credentials {
            ca: certificates(ca)?,
            chain: certificates(cert)?,
            key: PrivateKeyDer::from_pem_file(key).map_err(|e| read_err(key, e))?,
        })
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in &self.ca {
            roots
                .add(ca.clone())
                .map_err(|e| TlsError::Setup(format!("the CA certificate: {e}")))?;
        }
        Ok(Arc::new(roots))
    }

    /// Checks that these are member `id`'s of `ensemble`: the certificate chains to the CA, is
    /// valid now, names the member, and belongs to the key. A member started with another's
    /// credentials stops at start-up rather than being refused by every peer.
    pub fn check_member(&self, ensemble: &str, id: PeerId) -> Result<(), TlsError> {
        check_ensemble_name(ensemble)?;
        let name = member_name(ensemble, id);
        let verifier = WebPkiServerVerifier::builder_with_provider(self.roots()?, provider())
            .build()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| TlsError::Setup(format!("{name}: {e}")))?;
        let (end_entity, intermediates) = self
            .chain
            .split_first()
            .ok_or_else(|| TlsError::Setup("no certificate".into()))?;
        verifier
            .verify_server_cert(
                end_entity,
                intermediates,
                &server_name,
                &[],
                UnixTime::now(),
            )
            .map_err(|e| TlsError::NotThisMember {
                name: name.clone(),
                reason: e.to_string(),
            })?;
        if member_of(end_entity, ensemble) != Some(id) {
            return Err(TlsError::NotThisMember {
                name,
                reason: "a member certificate names its member and nothing else (one DNS name, \
                         no wildcard)"
                    .into(),
            });
        }
        // Building a config checks that the key is the certificate's.
        self.server_config(ensemble, &BTreeSet::new())?;
        Ok(())
    }

    /// The TLS 1.3 server side: a client certificate from the ensemble's CA is required, and it
    /// must name one of `peers` and nothing else, so a refused peer is refused in the
    /// handshake.
    pub(crate) fn server_config(
        &self,
        ensemble: &str,
        peers: &BTreeSet<PeerId>,
    ) -> Result<rustls::ServerConfig, TlsError> {
        check_ensemble_name(ensemble)?;
        let webpki = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .build()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let verifier = Arc::new(MemberClientVerifier {
            webpki,
            ensemble: ensemble.to_owned(),
            peers: peers.clone(),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::KeyMismatch(e.to_string()))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        // No resumption: a resumed handshake would skip the certificate checks (an expired
        // certificate would go on being accepted). Peer connections live long; a full
        // handshake each time costs nothing that matters.
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(NoServerSessionStorage {});
        Ok(config)
    }

    /// The TLS 1.3 client side: the server must present the certificate of the member dialed
    /// (the server name the dial gives), naming nothing else, and this member presents its
    /// own.
    pub(crate) fn client_config(&self, ensemble: &str) -> Result<rustls::ClientConfig, TlsError> {
        let webpki = WebPkiServerVerifier::builder_with_provider(self.roots()?, provider())
            .build()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let verifier = Arc::new(MemberServerVerifier {
            webpki,
            ensemble: ensemble.to_owned(),
        });
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::KeyMismatch(e.to_string()))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        config.resumption = Resumption::disabled();
        Ok(config)
    }
}

/// The member a certificate names: its one DNS name (not a wildcard) must be
/// `member-<id>.<ensemble>.coord`. A certificate naming several members, or all of them with a
/// wildcard, names none: it could pose as each.
pub(crate) fn member_of(end_entity: &CertificateDer<'_>, ensemble: &str) -> Option<PeerId> {
    let cert = webpki::EndEntityCert::try_from(end_entity).ok()?;
    let mut names = cert.valid_dns_names();
    let name = names.next()?;
    if names.next().is_some() {
        return None;
    }
    let suffix = format!(".{ensemble}.coord");
    let id = name
        .strip_prefix("member-")?
        .strip_suffix(suffix.as_str())?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || id.starts_with('0') {
        return None;
    }
    id.parse().ok().map(PeerId)
}

fn refused(reason: &str) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(std::io::Error::other(reason.to_owned())),
    )))
}

/// The standard chain check, then: the certificate names exactly the member dialed.
#[derive(Debug)]
struct MemberServerVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    ensemble: String,
}

impl ServerCertVerifier for MemberServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let named = member_of(end_entity, &self.ensemble).map(|id| member_name(&self.ensemble, id));
        match (named, server_name) {
            (Some(named), ServerName::DnsName(dialed)) if named == dialed.as_ref() => Ok(verified),
            _ => Err(refused(
                "the certificate does not name exactly the member dialed",
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The standard chain check, then: the certificate names exactly one of the peers.
#[derive(Debug)]
struct MemberClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    ensemble: String,
    peers: BTreeSet<PeerId>,
}

impl ClientCertVerifier for MemberClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)?;
        match member_of(end_entity, &self.ensemble) {
            Some(id) if self.peers.contains(&id) => Ok(verified),
            _ => Err(refused("the certificate names no peer of this member")),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn check_ensemble_name(ensemble: &str) -> Result<(), TlsError> {
    let valid = !ensemble.is_empty()
        && ensemble.len() <= 63
        && ensemble
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ensemble.starts_with('-')
        && !ensemble.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(TlsError::BadEnsembleName(ensemble.to_owned()))
    }
}
