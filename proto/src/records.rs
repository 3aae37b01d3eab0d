//! The session handshake and the headers that precede every request and reply
//! (`ConnectRequest`, `ConnectResponse`, `RequestHeader`, `ReplyHeader`, `MultiHeader`), the
//! `WatcherEvent` notification and the `ClientInfo` of whoAmI, as `zookeeper.jute` lays them out.

use bytes::{BufMut, BytesMut};

use crate::frame::write_frame;
use crate::jute::{
    write_bool, write_buffer, write_i32, write_i64, write_string, DecodeError, Reader, Record,
};
use crate::types::{xid, EventType, KeeperState};

/// The first packet of a connection (jute `ConnectRequest`); it has no `RequestHeader`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    /// Always 0 in every ZooKeeper client to date.
    pub protocol_version: i32,
    /// The highest zxid the client has seen; a server behind it must refuse the session.
    pub last_zxid_seen: i64,
    /// Requested session timeout in milliseconds (the server clamps it).
    pub timeout_ms: i32,
    /// 0 for a new session, else the session to resume.
    pub session_id: i64,
    /// The session password when resuming (16 bytes from ZooKeeper), empty otherwise. A null
    /// buffer is read as empty.
    pub passwd: Vec<u8>,
    /// Whether the client accepts a read-only server. Clients before 3.4 do not send the field;
    /// it then reads as false.
    pub read_only: bool,
}

impl ConnectRequest {
    /// Decodes a connect request and also reports whether the optional `readOnly` byte was on the
    /// wire. ZooKeeper answers a client that omitted it with a `ConnectResponse` that omits it too
    /// (see [`ConnectResponse::write_without_read_only`]). Bytes after the record are ignored.
    pub fn decode_detailed(bytes: &[u8]) -> Result<(Self, bool), DecodeError> {
        Self::read_detailed(&mut Reader::new(bytes))
    }

    fn read_detailed(r: &mut Reader<'_>) -> Result<(Self, bool), DecodeError> {
        let mut req = ConnectRequest {
            protocol_version: r.read_i32()?,
            last_zxid_seen: r.read_i64()?,
            timeout_ms: r.read_i32()?,
            session_id: r.read_i64()?,
            passwd: r.read_buffer_or_empty()?,
            read_only: false,
        };
        let read_only_sent = !r.is_empty();
        if read_only_sent {
            req.read_only = r.read_bool()?;
        }
        Ok((req, read_only_sent))
    }
}

impl Record for ConnectRequest {
    /// The `readOnly` byte is optional: when the input ends before it, it reads as false.
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Self::read_detailed(r).map(|(req, _)| req)
    }

    fn write(&self, buf: &mut impl BufMut) {
        write_i32(buf, self.protocol_version);
        write_i64(buf, self.last_zxid_seen);
        write_i32(buf, self.timeout_ms);
        write_i64(buf, self.session_id);
        write_buffer(buf, &self.passwd);
        write_bool(buf, self.read_only);
    }
}

/// The server's answer to a [`ConnectRequest`] (jute `ConnectResponse`); no `ReplyHeader`.
///
/// A refused or expired session is answered with `timeout_ms` 0, `session_id` 0 and a 16-byte
/// zero password, after which the server closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    /// The negotiated session timeout in milliseconds.
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    /// Whether this server is read-only.
    pub read_only: bool,
}

impl ConnectResponse {
    /// The encoding for a client that did not send `readOnly` (pre-3.4), which would otherwise
    /// read the extra byte as the start of the next packet (ZooKeeper's `ProtocolManager`).
    pub fn write_without_read_only(&self, buf: &mut impl BufMut) {
        write_i32(buf, self.protocol_version);
        write_i32(buf, self.timeout_ms);
        write_i64(buf, self.session_id);
        write_buffer(buf, &self.passwd);
    }

    /// Appends the whole response frame (length prefix included), with or without the
    /// `readOnly` byte; pass what [`ConnectRequest::decode_detailed`] reported.
    pub fn write_frame(&self, buf: &mut BytesMut, with_read_only: bool) {
        write_frame(buf, |b| {
            if with_read_only {
                self.write(b);
            } else {
                self.write_without_read_only(b);
            }
        });
    }
}

impl Record for ConnectResponse {
    /// Like ZooKeeper's client, accepts a response without the trailing `readOnly` byte.
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut rsp = ConnectResponse {
            protocol_version: r.read_i32()?,
            timeout_ms: r.read_i32()?,
            session_id: r.read_i64()?,
            passwd: r.read_buffer_or_empty()?,
            read_only: false,
        };
        if !r.is_empty() {
            rsp.read_only = r.read_bool()?;
        }
        Ok(rsp)
    }

    /// Always writes `readOnly`, as ZooKeeper does for every 3.4+ client.
    fn write(&self, buf: &mut impl BufMut) {
        self.write_without_read_only(buf);
        write_bool(buf, self.read_only);
    }
}

/// jute `RequestHeader`: precedes every request after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestHeader {
    /// The client's request number, echoed in the reply; or a reserved value from [`xid`].
    pub xid: i32,
    /// The operation code (`ZooDefs.OpCode`); kept raw so unknown codes can be answered.
    pub op: i32,
}

/// Encoded size of a [`RequestHeader`].
pub const REQUEST_HEADER_BYTES: usize = 8;

impl RequestHeader {
    /// Splits a request frame into its header and body.
    pub fn split(frame: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let mut r = Reader::new(frame);
        let header = Self::read(&mut r)?;
        Ok((header, r.rest()))
    }
}

impl Record for RequestHeader {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(RequestHeader {
            xid: r.read_i32()?,
            op: r.read_i32()?,
        })
    }

    fn write(&self, buf: &mut impl BufMut) {
        write_i32(buf, self.xid);
        write_i32(buf, self.op);
    }
}

/// jute `ReplyHeader`: precedes every reply and notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplyHeader {
    /// The request's xid, or a reserved value from [`xid`].
    pub xid: i32,
    /// The last zxid the server has applied (or the event's zxid in a notification).
    pub zxid: i64,
    /// 0 or a `KeeperException.Code` (see [`crate::ErrorCode`]).
    pub err: i32,
}

/// Encoded size of a [`ReplyHeader`].
pub const REPLY_HEADER_BYTES: usize = 16;

impl ReplyHeader {
    /// Splits a reply frame into its header and body.
    pub fn split(frame: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let mut r = Reader::new(frame);
        let header = Self::read(&mut r)?;
        Ok((header, r.rest()))
    }
}

impl Record for ReplyHeader {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ReplyHeader {
            xid: r.read_i32()?,
            zxid: r.read_i64()?,
            err: r.read_i32()?,
        })
    }

    fn write(&self, buf: &mut impl BufMut) {
        write_i32(buf, self.xid);
        write_i64(buf, self.zxid);
        write_i32(buf, self.err);
    }
}

/// jute `MultiHeader`: precedes each op of a multi request and each result of a multi response;
/// a header with `done` set ends the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiHeader {
    /// The op code, or -1 (`OpCode.error`) for an error result and for the end marker.
    pub op: i32,
    pub done: bool,
    /// -1 in requests; in responses 0, or the error code of an error result.
    pub err: i32,
}

/// Encoded size of a [`MultiHeader`].
pub const MULTI_HEADER_BYTES: usize = 9;

impl MultiHeader {
    /// The header that ends a multi request or response: `{-1, true, -1}`.
    pub const DONE: MultiHeader = MultiHeader {
        op: -1,
        done: true,
        err: -1,
    };
}

impl Record for MultiHeader {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(MultiHeader {
            op: r.read_i32()?,
            done: r.read_bool()?,
            err: r.read_i32()?,
        })
    }

    fn write(&self, buf: &mut impl BufMut) {
        write_i32(buf, self.op);
        write_bool(buf, self.done);
        write_i32(buf, self.err);
    }
}

/// jute `WatcherEvent`: the body of a notification (xid -1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherEvent {
    pub event_type: EventType,
    pub state: KeeperState,
    /// The znode the event is about; a null path reads as empty.
    pub path: String,
}

impl Record for WatcherEvent {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let event_type = r.read_i32()?;
        let event_type = EventType::from_code(event_type).ok_or(DecodeError::BadEnum {
            field: "WatcherEvent.type",
            value: event_type,
        })?;
        let state = r.read_i32()?;
        let state = KeeperState::from_code(state).ok_or(DecodeError::BadEnum {
            field: "WatcherEvent.state",
            value: state,
        })?;
        Ok(WatcherEvent {
            event_type,
            state,
            path: r.read_string_or_empty()?,
        })
    }

    fn write(&self, buf: &mut impl BufMut) {
        write_i32(buf, self.event_type.code());
        write_i32(buf, self.state.code());
        write_string(buf, &self.path);
    }
}

impl WatcherEvent {
    /// Appends a whole notification frame: length prefix, `ReplyHeader{xid: -1, zxid, err: 0}`,
    /// then the event. ZooKeeper puts the zxid of the change that fired the watch in the header
    /// (-1 when there is none, e.g. for state events).
    pub fn write_notification(&self, buf: &mut BytesMut, zxid: i64) {
        write_frame(buf, |b| {
            ReplyHeader {
                xid: xid::NOTIFICATION,
                zxid,
                err: 0,
            }
            .write(b);
            self.write(b);
        });
    }
}

/// jute `ClientInfo` (in `org.apache.zookeeper.data`): one authenticated identity, as whoAmI
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientInfo {
    pub auth_scheme: String,
    pub user: String,
}

impl Record for ClientInfo {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ClientInfo {
            auth_scheme: r.read_string_required("ClientInfo.authScheme")?,
            user: r.read_string_required("ClientInfo.user")?,
        })
    }

    fn write(&self, buf: &mut impl BufMut) {
        write_string(buf, &self.auth_scheme);
        write_string(buf, &self.user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::decode_frame;
    use proptest::prelude::*;

    /// A 3.9 client's handshake, byte by byte from `ConnectRequest` in zookeeper.jute.
    fn connect_request_fixture() -> (ConnectRequest, Vec<u8>) {
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0x1_0000_0005,
            timeout_ms: 30_000,
            session_id: 0x0102_0304_0506_0708,
            passwd: vec![0xaa, 0xbb],
            read_only: true,
        };
        let bytes = vec![
            0, 0, 0, 0, // protocolVersion
            0, 0, 0, 1, 0, 0, 0, 5, // lastZxidSeen
            0, 0, 0x75, 0x30, // timeOut = 30000
            1, 2, 3, 4, 5, 6, 7, 8, // sessionId
            0, 0, 0, 2, 0xaa, 0xbb, // passwd
            1,    // readOnly
        ];
        (req, bytes)
    }

    #[test]
    fn connect_request_matches_hand_encoding() {
        let (req, bytes) = connect_request_fixture();
        assert_eq!(req.to_vec(), bytes);
        assert_eq!(ConnectRequest::decode(&bytes), Ok(req.clone()));
        assert_eq!(ConnectRequest::decode_detailed(&bytes), Ok((req, true)));
    }

    #[test]
    fn connect_request_without_read_only_reads_false() {
        let (mut req, mut bytes) = connect_request_fixture();
        bytes.pop();
        req.read_only = false;
        assert_eq!(ConnectRequest::decode(&bytes), Ok(req.clone()));
        assert_eq!(ConnectRequest::decode_detailed(&bytes), Ok((req, false)));
    }

    #[test]
    fn connect_request_null_passwd_reads_empty() {
        let mut bytes = vec![0u8; 24];
        bytes.extend_from_slice(&[0xff; 4]);
        let req = ConnectRequest::decode(&bytes).unwrap();
        assert!(req.passwd.is_empty());
        assert!(!req.read_only);
    }

    #[test]
    fn connect_request_prefixes_before_read_only_are_errors() {
        let (_, bytes) = connect_request_fixture();
        // Every prefix short of the passwd's end is an error; the one without readOnly is fine.
        for n in 0..bytes.len() - 1 {
            assert!(ConnectRequest::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn connect_response_with_and_without_read_only() {
        let rsp = ConnectResponse {
            protocol_version: 0,
            timeout_ms: 4000,
            session_id: 7,
            passwd: vec![9; 16],
            read_only: false,
        };
        let mut full = BytesMut::new();
        rsp.write_frame(&mut full, true);
        let mut legacy = BytesMut::new();
        rsp.write_frame(&mut legacy, false);
        assert_eq!(full.len(), 4 + 4 + 4 + 8 + 4 + 16 + 1);
        assert_eq!(legacy.len(), full.len() - 1);
        assert_eq!(&full[..4], &(full.len() as i32 - 4).to_be_bytes());
        let full = decode_frame(&mut full, 100).unwrap().unwrap();
        let legacy = decode_frame(&mut legacy, 100).unwrap().unwrap();
        assert_eq!(ConnectResponse::decode(&full), Ok(rsp.clone()));
        assert_eq!(ConnectResponse::decode(&legacy), Ok(rsp));
    }

    #[test]
    fn headers_split_off_their_bodies() {
        let frame = [0, 0, 0, 7, 0, 0, 0, 4, 0xde, 0xad];
        let (h, body) = RequestHeader::split(&frame).unwrap();
        assert_eq!(h, RequestHeader { xid: 7, op: 4 });
        assert_eq!(body, &[0xde, 0xad]);
        assert!(RequestHeader::split(&frame[..7]).is_err());

        let h = ReplyHeader {
            xid: -2,
            zxid: 0x5_0000_0001,
            err: -101,
        };
        let mut v = h.to_vec();
        assert_eq!(v.len(), REPLY_HEADER_BYTES);
        assert_eq!(
            v,
            [0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 5, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0x9b]
        );
        v.push(1);
        assert_eq!(ReplyHeader::split(&v), Ok((h, &[1u8][..])));
    }

    #[test]
    fn notification_frame_matches_hand_encoding() {
        let ev = WatcherEvent {
            event_type: EventType::NodeDataChanged,
            state: KeeperState::SyncConnected,
            path: "/a".into(),
        };
        let mut buf = BytesMut::new();
        ev.write_notification(&mut buf, 0x22);
        let expected = [
            0, 0, 0, 30, // length
            0xff, 0xff, 0xff, 0xff, // xid -1
            0, 0, 0, 0, 0, 0, 0, 0x22, // zxid
            0, 0, 0, 0, // err
            0, 0, 0, 3, // type NodeDataChanged
            0, 0, 0, 3, // state SyncConnected
            0, 0, 0, 2, b'/', b'a',
        ];
        assert_eq!(&buf[..], &expected[..]);
        let (h, body) = ReplyHeader::split(&expected[4..]).unwrap();
        assert_eq!(h.xid, xid::NOTIFICATION);
        assert_eq!(WatcherEvent::decode(body), Ok(ev));
    }

    #[test]
    fn watcher_event_with_unknown_type_is_an_error() {
        let v = [0, 0, 0, 99, 0, 0, 0, 3, 0, 0, 0, 0];
        assert_eq!(
            WatcherEvent::decode(&v),
            Err(DecodeError::BadEnum {
                field: "WatcherEvent.type",
                value: 99
            })
        );
    }

    #[test]
    fn multi_header_done_is_nine_bytes() {
        assert_eq!(
            MultiHeader::DONE.to_vec(),
            [0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(MULTI_HEADER_BYTES, 9);
    }

    proptest! {
        #[test]
        fn connect_records_roundtrip(
            protocol_version in any::<i32>(),
            last_zxid_seen in any::<i64>(),
            timeout_ms in any::<i32>(),
            session_id in any::<i64>(),
            passwd in proptest::collection::vec(any::<u8>(), 0..20),
            read_only in any::<bool>(),
        ) {
            let req = ConnectRequest { protocol_version, last_zxid_seen, timeout_ms, session_id, passwd: passwd.clone(), read_only };
            prop_assert_eq!(ConnectRequest::decode_detailed(&req.to_vec()), Ok((req, true)));
            let rsp = ConnectResponse { protocol_version, timeout_ms, session_id, passwd, read_only };
            prop_assert_eq!(ConnectResponse::decode(&rsp.to_vec()), Ok(rsp));
        }

        #[test]
        fn arbitrary_bytes_never_panic_records(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ConnectRequest::decode_detailed(&bytes);
            let _ = ConnectResponse::decode(&bytes);
            let _ = WatcherEvent::decode(&bytes);
            let _ = ReplyHeader::split(&bytes);
            let _ = MultiHeader::decode(&bytes);
            let _ = ClientInfo::decode(&bytes);
        }

        #[test]
        fn watcher_events_roundtrip(
            event_type in prop::sample::select(vec![-1, 1, 2, 3, 4, 5, 6, 7]),
            state in prop::sample::select(vec![0, 3, 4, 5, 6, 7, -112]),
            path in "\\PC{0,12}",
        ) {
            let ev = WatcherEvent {
                event_type: EventType::from_code(event_type).unwrap(),
                state: KeeperState::from_code(state).unwrap(),
                path,
            };
            let v = ev.to_vec();
            prop_assert_eq!(WatcherEvent::decode(&v), Ok(ev));
            for n in 0..v.len() {
                prop_assert!(WatcherEvent::decode(&v[..n]).is_err());
            }
        }
    }
}
