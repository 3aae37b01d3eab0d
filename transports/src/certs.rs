//! Development certificates (rcgen): an ensemble CA, and member certificates that name their
//! member as [`crate::tls::member_name`] says. `coord certs` writes them to files; tests make
//! them in memory, good and rogue ones alike.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

use crate::tls::{member_name, Credentials, TlsError};
use crate::PeerId;

/// How long a development certificate lasts.
const VALID_FOR: Duration = Duration::days(825);

/// What a certificate may be used for (its extended key usages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A member's: it is both a TLS server (dialed) and a client (dialing).
    Member,
    /// A client port's: a TLS server only.
    Server,
    /// A client's: a TLS client only.
    Client,
}

/// A certificate and its key, as PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority that signs an ensemble's member (and client) certificates.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

fn pem_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Setup(format!("PEM: {e}"))
}

fn rcgen_err(e: rcgen::Error) -> TlsError {
    TlsError::Setup(format!("certificate generation: {e}"))
}

impl Issued {
    /// These as a member's credentials, under the CA `ca_pem`.
    pub fn credentials(&self, ca_pem: &str) -> Result<Credentials, TlsError> {
        let parse = |pem: &str| {
            CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(pem_err)
        };
        Ok(Credentials {
            ca: parse(ca_pem)?,
            chain: parse(&self.cert_pem)?,
            key: PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(pem_err)?,
        })
    }
}

impl CertAuthority {
    /// A new CA, named `common_name`, valid from now on.
    pub fn new(common_name: &str) -> Result<CertAuthority, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + VALID_FOR;
        let key = KeyPair::generate().map_err(rcgen_err)?;
        let cert = params.self_signed(&key).map_err(rcgen_err)?;
        let key_pem = key.serialize_pem();
        Ok(CertAuthority {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            key_pem,
        })
    }

    /// The CA's certificate, as PEM: what every member trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, as PEM: keep it away from the members.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Member `id`'s certificate for `ensemble`, valid now.
    pub fn member(&self, ensemble: &str, id: PeerId) -> Result<Issued, TlsError> {
        let now = OffsetDateTime::now_utc();
        self.issue(
            &format!("coord member {} of {ensemble}", id.0),
            vec![member_name(ensemble, id)],
            now - Duration::minutes(5),
            now + VALID_FOR,
        )
    }

    /// A member certificate with the given names and validity: for tests of what must be
    /// refused (an expired certificate, one naming no member).
    pub fn issue(
        &self,
        common_name: &str,
        names: Vec<String>,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, TlsError> {
        self.issue_for(Purpose::Member, common_name, names, not_before, not_after)
    }

    /// A certificate for `purpose`, named `common_name` (its subject is `CN=<common_name>`)
    /// with the subject alternative names `names` (DNS names or IP addresses).
    pub fn issue_for(
        &self,
        purpose: Purpose,
        common_name: &str,
        names: Vec<String>,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, TlsError> {
        let mut params = CertificateParams::new(names).map_err(rcgen_err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match purpose {
            // A member is both: it dials its peers and they dial it.
            Purpose::Member => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            // One only, so that a client's certificate cannot pose as a server that its CA
            // also signed, nor a server's key act as a client.
            Purpose::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Purpose::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().map_err(rcgen_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_err)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
