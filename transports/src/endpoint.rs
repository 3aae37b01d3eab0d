//! The QUIC endpoint's keys: a member's stateless-reset key and the key its connection ids
//! are signed with, both derived from its private key so that they are the same in every run.

use std::sync::Arc;
use std::time::Duration;

use quinn::{ConnectionId, ConnectionIdGenerator, EndpointConfig};
use quinn_proto::InvalidCid;

use crate::tls::Credentials;

/// A secret of this member's for `purpose`: the same for every run (derived from its private
/// key).
fn member_secret(credentials: &Credentials, purpose: &[u8]) -> ring::digest::Digest {
    let mut input = credentials.key.secret_der().to_vec();
    input.extend_from_slice(purpose);
    ring::digest::digest(&ring::digest::SHA256, &input)
}

/// The endpoint's configuration: the stateless-reset key, and the key with which connection
/// ids are made and checked, both the same for every run of this member. So a restarted
/// member recognizes the connection ids of its former run as its own (with a random key it
/// would drop their packets as invalid, unanswered) and answers them with a stateless reset
/// its peers accept: they drop the connections they dialed to its former self at their next
/// packet, instead of after the keep-alive check in `link` or the idle timeout.
pub(crate) fn endpoint_config(credentials: &Credentials) -> EndpointConfig {
    let reset = member_secret(credentials, b"coord stateless reset key");
    let mut config = EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        reset.as_ref(),
    )));
    let cid = member_secret(credentials, b"coord connection id key");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, cid.as_ref());
    config.cid_generator(move || Box::new(SignedCids { key: key.clone() }));
    config
}

/// Random bytes in a connection id, then as many of their MAC.
const CID_RANDOM_BYTES: usize = 8;
const CID_MAC_BYTES: usize = 8;

/// Connection ids that are random and signed with a member's key (HMAC-SHA256): a restarted
/// member knows its former run's ids, and nobody without the key can make one it takes for
/// its own, so stateless-reset tokens cannot be collected for ids it never gave out. (quinn's
/// hashed generator signs with a non-cryptographic hash, whose key two ids reveal; with a
/// key that outlives the process, that would let a table of reset tokens be built up.)
struct SignedCids {
    key: ring::hmac::Key,
}

impl SignedCids {
    fn mac(&self, random: &[u8]) -> [u8; CID_MAC_BYTES] {
        let tag = ring::hmac::sign(&self.key, random);
        let mut mac = [0u8; CID_MAC_BYTES];
        mac.copy_from_slice(&tag.as_ref()[..CID_MAC_BYTES]);
        mac
    }
}

impl ConnectionIdGenerator for SignedCids {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut bytes = [0u8; CID_RANDOM_BYTES + CID_MAC_BYTES];
        rand::Rng::fill(&mut rand::thread_rng(), &mut bytes[..CID_RANDOM_BYTES]);
        let mac = self.mac(&bytes[..CID_RANDOM_BYTES]);
        bytes[CID_RANDOM_BYTES..].copy_from_slice(&mac);
        ConnectionId::new(&bytes)
    }

    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        let bytes: &[u8] = cid;
        if bytes.len() != CID_RANDOM_BYTES + CID_MAC_BYTES {
            return Err(InvalidCid);
        }
        let (random, mac) = bytes.split_at(CID_RANDOM_BYTES);
        let expected = self.mac(random);
        // Constant time: a mismatch says nothing about how much of the MAC was right.
        let differs = expected
            .iter()
            .zip(mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differs == 0 {
            Ok(())
        } else {
            Err(InvalidCid)
        }
    }

    fn cid_len(&self) -> usize {
        CID_RANDOM_BYTES + CID_MAC_BYTES
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(secret: &[u8]) -> SignedCids {
        SignedCids {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        }
    }

    #[test]
    fn connection_ids_are_known_to_the_same_key_only() {
        let mut first_run = generator(b"member 1");
        let second_run = generator(b"member 1");
        let stranger = generator(b"member 2");
        let cid = first_run.generate_cid();
        assert_eq!(cid.len(), first_run.cid_len());
        assert!(second_run.validate(&cid).is_ok());
        assert!(stranger.validate(&cid).is_err());
        assert_ne!(first_run.generate_cid(), cid);
        for i in 0..cid.len() {
            let mut bytes = cid.to_vec();
            bytes[i] ^= 1;
            assert!(second_run.validate(&ConnectionId::new(&bytes)).is_err());
        }
        assert!(second_run.validate(&ConnectionId::new(&cid[..8])).is_err());
    }
}
