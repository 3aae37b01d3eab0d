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

use std::sync::Arc;
use std::time::Duration;

use coord_engine::Forwarded;
use tracing::{info, warn};

use crate::forward::{PeerAnswer, PeerRequest, TOUCH_BATCH_MAX};
use crate::sessions::SessionOwner;
use crate::shared::{ask_leader, Shared};
use crate::write::Mode;

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
