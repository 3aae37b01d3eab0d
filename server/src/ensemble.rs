//! The server as an ensemble member: who the members are, what a follower asks its leader, and
//! the tasks that keep sessions global.
//!
//! - Writes from a follower's clients are forwarded ([`PeerRequest::Write`]) and decided by the
//!   leader alone; a refusal comes back as [`PeerAnswer::Refused`].
//! - Sessions are global. A follower forwards the connect of a new session (its `CreateSession`
//!   write) and the resumption of an existing one ([`PeerRequest::Resume`]); the leader tracks
//!   every session's deadline and which member's connection owns it (a write through any other
//!   connection gets SessionMoved), and alone expires sessions. Followers report the sessions
//!   their connections keep alive ([`PeerRequest::Touch`]) every expiry period.
//! - `sync` on a follower asks the leader for the last zxid it proposed
//!   ([`PeerRequest::Sync`]) and answers once that is applied here.
//! - A member with no leader it is synced with serves no client: its connections close and new
//!   ones are refused, so clients move to a member that has a quorum.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use coord_engine::{ForwardReply, Forwarded, Zxid};
use coord_znode::{decode_rejection, encode_rejection, Reader, Rejection, RemoteWrite};
use tracing::{debug, info, warn};

use crate::conn::ConnId;
use crate::server::Shared;
use crate::sessions::SessionOwner;
use crate::write::Mode;

/// A member's part in the ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Participant,
    Observer,
}

/// One member, as every member's configuration lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry {
    pub id: u64,
    /// Where its peers reach it: election and replication share this one port.
    pub peer_addr: SocketAddr,
    /// Its ZooKeeper client port.
    pub client_addr: SocketAddr,
    pub role: Role,
}

/// The `[ensemble]` section, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsembleConfig {
    /// This member's id.
    pub id: u64,
    pub init_limit_ticks: u32,
    pub sync_limit_ticks: u32,
    pub servers: Vec<ServerEntry>,
}

impl EnsembleConfig {
    pub fn me(&self) -> Option<&ServerEntry> {
        self.servers.iter().find(|s| s.id == self.id)
    }
}

/// Session ids a follower reports alive in one message.
const TOUCH_BATCH_MAX: usize = 8192;

/// What a follower asks its leader. Every request is bounded by the frame it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRequest {
    /// A client's write; `owner` is the connection it came from, when a client sent it.
    Write {
        owner: Option<ConnId>,
        write: RemoteWrite,
    },
    /// A client reconnects with an existing session through connection `owner`.
    Resume {
        session_id: i64,
        passwd: Vec<u8>,
        timeout_ms: u64,
        owner: ConnId,
    },
    /// These sessions' clients are connected to the sender.
    Touch {
        sessions: Vec<i64>,
    },
    Sync,
}

/// The leader's answer to a [`PeerRequest`] that it did not propose a txn for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAnswer {
    /// A write was refused; answer once `after` is applied.
    Refused {
        rejection: Rejection,
        after: Zxid,
    },
    /// The session moved to the connection; its earlier writes end at `last_proposed`.
    Resumed {
        last_proposed: Zxid,
    },
    /// The session is gone (expired, closing, or a wrong password).
    Gone,
    /// Every write proposed before the sync ends at `zxid`.
    Synced {
        zxid: Zxid,
    },
    Done,
    /// The request did not decode.
    Malformed,
}

const Q_WRITE: u8 = 1;
const Q_RESUME: u8 = 2;
const Q_TOUCH: u8 = 3;
const Q_SYNC: u8 = 4;
const A_REFUSED: u8 = 1;
const A_RESUMED: u8 = 2;
const A_GONE: u8 = 3;
const A_SYNCED: u8 = 4;
const A_DONE: u8 = 5;
const A_MALFORMED: u8 = 6;

/// Why bytes from a peer are not a request or an answer.
#[derive(Debug, thiserror::Error)]
#[error("malformed peer message: {0}")]
pub struct Malformed(String);

fn finish(r: &Reader<'_>) -> Result<(), Malformed> {
    match r.remaining() {
        0 => Ok(()),
        n => Err(Malformed(format!("{n} trailing bytes"))),
    }
}

impl PeerRequest {
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            PeerRequest::Write { owner, write } => {
                out.push(Q_WRITE);
                out.extend_from_slice(&owner.unwrap_or(0).to_be_bytes());
                write.encode(&mut out);
            }
            PeerRequest::Resume {
                session_id,
                passwd,
                timeout_ms,
                owner,
            } => {
                out.push(Q_RESUME);
                out.extend_from_slice(&session_id.to_be_bytes());
                out.extend_from_slice(&(passwd.len() as u32).to_be_bytes());
                out.extend_from_slice(passwd);
                out.extend_from_slice(&timeout_ms.to_be_bytes());
                out.extend_from_slice(&owner.to_be_bytes());
            }
            PeerRequest::Touch { sessions } => {
                out.push(Q_TOUCH);
                out.extend_from_slice(&(sessions.len() as u32).to_be_bytes());
                for id in sessions {
                    out.extend_from_slice(&id.to_be_bytes());
                }
            }
            PeerRequest::Sync => out.push(Q_SYNC),
        }
        Bytes::from(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<PeerRequest, Malformed> {
        let m = |e: coord_znode::Error| Malformed(e.to_string());
        let mut r = Reader::new(bytes);
        let request = match r.u8().map_err(m)? {
            Q_WRITE => {
                // Connection ids start at 1: 0 means no connection.
                let owner = r.i64().map_err(m)? as u64;
                PeerRequest::Write {
                    owner: (owner != 0).then_some(owner),
                    write: RemoteWrite::decode(&mut r).map_err(m)?,
                }
            }
            Q_RESUME => PeerRequest::Resume {
                session_id: r.i64().map_err(m)?,
                passwd: r.bytes().map_err(m)?.to_vec(),
                timeout_ms: r.i64().map_err(m)? as u64,
                owner: r.i64().map_err(m)? as u64,
            },
            Q_TOUCH => {
                let n = r.count(TOUCH_BATCH_MAX, 8).map_err(m)?;
                let mut sessions = Vec::with_capacity(n);
                for _ in 0..n {
                    sessions.push(r.i64().map_err(m)?);
                }
                PeerRequest::Touch { sessions }
            }
            Q_SYNC => PeerRequest::Sync,
            tag => return Err(Malformed(format!("request tag {tag}"))),
        };
        finish(&r)?;
        Ok(request)
    }
}

impl PeerAnswer {
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            PeerAnswer::Refused { rejection, after } => {
                out.push(A_REFUSED);
                out.extend_from_slice(&after.as_u64().to_be_bytes());
                encode_rejection(rejection, &mut out);
            }
            PeerAnswer::Resumed { last_proposed } => {
                out.push(A_RESUMED);
                out.extend_from_slice(&last_proposed.as_u64().to_be_bytes());
            }
            PeerAnswer::Gone => out.push(A_GONE),
            PeerAnswer::Synced { zxid } => {
                out.push(A_SYNCED);
                out.extend_from_slice(&zxid.as_u64().to_be_bytes());
            }
            PeerAnswer::Done => out.push(A_DONE),
            PeerAnswer::Malformed => out.push(A_MALFORMED),
        }
        Bytes::from(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<PeerAnswer, Malformed> {
        let m = |e: coord_znode::Error| Malformed(e.to_string());
        let mut r = Reader::new(bytes);
        let zxid = |r: &mut Reader<'_>| r.i64().map(|z| Zxid::from_u64(z as u64)).map_err(m);
        let answer = match r.u8().map_err(m)? {
            A_REFUSED => {
                let after = zxid(&mut r)?;
                PeerAnswer::Refused {
                    rejection: decode_rejection(&mut r).map_err(m)?,
                    after,
                }
            }
            A_RESUMED => PeerAnswer::Resumed {
                last_proposed: zxid(&mut r)?,
            },
            A_GONE => PeerAnswer::Gone,
            A_SYNCED => PeerAnswer::Synced {
                zxid: zxid(&mut r)?,
            },
            A_DONE => PeerAnswer::Done,
            A_MALFORMED => PeerAnswer::Malformed,
            tag => return Err(Malformed(format!("answer tag {tag}"))),
        };
        finish(&r)?;
        Ok(answer)
    }
}

/// Sends `request` to the leader and decodes its answer. `None` if there is no leader, the
/// leader changed, or it proposed a txn (which a request of this kind never gets).
pub async fn ask_leader(shared: &Shared, request: PeerRequest) -> Option<PeerAnswer> {
    let member = shared.engine.member()?;
    match member.forward(request.encode()).await {
        Ok(ForwardReply::Answered(answer)) => match PeerAnswer::decode(&answer) {
            Ok(answer) => Some(answer),
            Err(err) => {
                warn!(error = %err, "malformed answer from the leader");
                None
            }
        },
        Ok(ForwardReply::Applied { .. }) => None,
        Err(err) => {
            debug!(error = %err, "request to the leader failed");
            None
        }
    }
}

/// On every member: decides what followers forward, whenever this member leads.
pub async fn decide_forwarded(shared: Arc<Shared>) {
    let Some(member) = shared.engine.member() else {
        return;
    };
    let Some(mut requests) = member.take_forwarded() else {
        return;
    };
    while let Some(forwarded) = requests.recv().await {
        let request = match PeerRequest::decode(&forwarded.request) {
            Ok(request) => request,
            Err(err) => {
                warn!(peer = forwarded.origin.0, error = %err, "malformed request from a member");
                // Answered, so that whoever waits for it is not left waiting.
                member.answer_forwarded(&forwarded, PeerAnswer::Malformed.encode());
                continue;
            }
        };
        let answer = decide(&shared, &forwarded, request);
        if let Some(answer) = answer {
            member.answer_forwarded(&forwarded, answer.encode());
        }
    }
}

/// Decides one forwarded request; `None` once a txn was proposed for it (the member that sent it
/// answers its client from its own apply).
fn decide(shared: &Shared, forwarded: &Forwarded, request: PeerRequest) -> Option<PeerAnswer> {
    let origin = forwarded.origin;
    match request {
        PeerRequest::Write { owner, write } => {
            let owner = match owner {
                Some(conn) => SessionOwner::Remote(origin, conn),
                None => SessionOwner::None,
            };
            match shared.propose_forwarded(forwarded, owner, write) {
                Ok(()) => None,
                Err(refused) => Some(PeerAnswer::Refused {
                    rejection: refused.rejection,
                    after: refused.after,
                }),
            }
        }
        PeerRequest::Resume {
            session_id,
            passwd,
            timeout_ms,
            owner,
        } => {
            let timeout_ms = shared.negotiate_timeout(timeout_ms.min(i32::MAX as u64) as i32);
            let owner = SessionOwner::Remote(origin, owner);
            let resumed = shared.resume_session(session_id, &passwd, timeout_ms, owner);
            Some(match resumed {
                Some(last_proposed) => PeerAnswer::Resumed { last_proposed },
                None => PeerAnswer::Gone,
            })
        }
        PeerRequest::Touch { sessions } => {
            for id in sessions {
                shared.sessions.touch(id);
            }
            Some(PeerAnswer::Done)
        }
        PeerRequest::Sync => Some(PeerAnswer::Synced {
            zxid: shared.sync_point(),
        }),
    }
}

/// On a follower or observer: tells the leader, every expiry period, which sessions this
/// member's connections keep alive.
pub async fn report_sessions(shared: Arc<Shared>, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if !matches!(shared.mode(), Mode::Follower | Mode::Observer) {
            continue;
        }
        let touched = shared.sessions.take_touched();
        for chunk in touched.chunks(TOUCH_BATCH_MAX) {
            let request = PeerRequest::Touch {
                sessions: chunk.to_vec(),
            };
            // Bounded: a leader that does not answer within a period is retried next period.
            let _ = tokio::time::timeout(period, ask_leader(&shared, request)).await;
        }
    }
}

/// Follows the member's status: a member that stops serving, or serves in a new epoch, closes
/// its clients' connections; they move to a member with a quorum, and reconnect with their
/// sessions (whose owner the new leader learns from the reconnect).
pub async fn follow_status(shared: Arc<Shared>) {
    let Some(member) = shared.engine.member() else {
        return;
    };
    let mut status = member.watch_status();
    let mut last = (shared.mode(), shared.engine.epoch());
    loop {
        if status.changed().await.is_err() {
            return;
        }
        // Keyed on the epoch too: a quick Follower -> Looking -> Follower (a new leader) may
        // reach here as one change, and its clients must still move.
        let now = (shared.mode(), shared.engine.epoch());
        if now == last {
            continue;
        }
        info!(
            mode = now.0.name(),
            was = last.0.name(),
            epoch = now.1 .0,
            "member mode changed"
        );
        if !now.0.serves() || now.1 != last.1 {
            for conn in shared.conn_infos() {
                conn.closing.request();
            }
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coord_proto::{ErrorCode, Id};
    use coord_znode::Write;

    #[test]
    fn requests_and_answers_round_trip_and_truncations_fail() {
        let requests = [
            PeerRequest::Write {
                owner: Some(7),
                write: RemoteWrite {
                    session_id: 3,
                    is_super: false,
                    ids: vec![Id::new("ip", "127.0.0.1")],
                    write: Write::Delete {
                        path: "/x".into(),
                        version: -1,
                    },
                },
            },
            PeerRequest::Resume {
                session_id: 9,
                passwd: vec![1; 16],
                timeout_ms: 4000,
                owner: 2,
            },
            PeerRequest::Touch {
                sessions: vec![1, 2, 3],
            },
            PeerRequest::Sync,
        ];
        for request in requests {
            let bytes = request.encode();
            assert_eq!(PeerRequest::decode(&bytes).unwrap(), request);
            for cut in 0..bytes.len() {
                assert!(PeerRequest::decode(&bytes[..cut]).is_err());
            }
        }
        let answers = [
            PeerAnswer::Refused {
                rejection: Rejection::Error(ErrorCode::NodeExists),
                after: Zxid::from_u64(5),
            },
            PeerAnswer::Resumed {
                last_proposed: Zxid::from_u64(6),
            },
            PeerAnswer::Gone,
            PeerAnswer::Synced {
                zxid: Zxid::from_u64(7),
            },
            PeerAnswer::Done,
            PeerAnswer::Malformed,
        ];
        for answer in answers {
            let bytes = answer.encode();
            assert_eq!(PeerAnswer::decode(&bytes).unwrap(), answer);
            for cut in 0..bytes.len() {
                assert!(PeerAnswer::decode(&bytes[..cut]).is_err());
            }
        }
    }
}
