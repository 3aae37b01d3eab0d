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

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
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
        // Building a config checks that the key is the certificate's.
        self.server_config(ensemble)?;
        Ok(())
    }

    /// The TLS 1.3 server side: a client certificate from the ensemble's CA is required.
    pub(crate) fn server_config(&self, ensemble: &str) -> Result<rustls::ServerConfig, TlsError> {
        check_ensemble_name(ensemble)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .build()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::KeyMismatch(e.to_string()))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// The TLS 1.3 client side: the server must present the certificate of the member dialed
    /// (the server name the dial gives), and this member presents its own.
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::KeyMismatch(e.to_string()))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
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

/// Which of `candidates` a verified peer certificate names: exactly one, or None.
pub(crate) fn identify(
    end_entity: &CertificateDer<'_>,
    ensemble: &str,
    candidates: impl Iterator<Item = PeerId>,
) -> Option<PeerId> {
    let cert = webpki::EndEntityCert::try_from(end_entity).ok()?;
    let mut found = None;
    for id in candidates {
        let Ok(name) = ServerName::try_from(member_name(ensemble, id)) else {
            continue;
        };
        if cert.verify_is_valid_for_subject_name(&name).is_ok() {
            if found.is_some() {
                // Naming two members proves neither.
                return None;
            }
            found = Some(id);
        }
    }
    found
}
