//! Server replies: the body after a [`ReplyHeader`], as `FinalRequestProcessor` builds it for
//! each op, and the helpers that frame a whole reply.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::write_frame;
use crate::jute::{
    read_acl_vec, write_buffer, write_i32, write_record_vec, write_string, write_string_vec,
    DecodeError, Reader, Record,
};
use crate::records::{ClientInfo, MultiHeader, ReplyHeader};
use crate::types::{Acl, OpCode, Stat};

/// One result inside a multi or multiRead reply (`OpResult`, as `MultiResponse` carries it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiResult {
    /// A create op: `CreateResponse`.
    Create { path: String },
    /// A create2, createContainer or createTTL op: `Create2Response` (all travel as op 15).
    Create2 { path: String, stat: Stat },
    /// `SetDataResponse`.
    SetData { stat: Stat },
    /// No body.
    Delete,
    /// No body.
    Check,
    /// A multiRead getData: `GetDataResponse`. The data is shared with the tree, not copied.
    GetData { data: Bytes, stat: Stat },
    /// A multiRead getChildren: `GetChildrenResponse`.
    GetChildren { children: Vec<String> },
    /// A failed op: header `{-1, false, err}` then `ErrorResponse{err}`. In a failed multi every
    /// op is an error: the culprit's own code, `RuntimeInconsistency` (-2) for the others; in a
    /// multiRead each failed read carries its own code and the rest succeed.
    Error(i32),
}

impl MultiResult {
    /// The header op code: the op's own, `Create2` for every create that returns a stat, -1 for
    /// an error.
    pub fn op_code(&self) -> i32 {
        match self {
            MultiResult::Create { .. } => OpCode::Create.code(),
            MultiResult::Create2 { .. } => OpCode::Create2.code(),
            MultiResult::SetData { .. } => OpCode::SetData.code(),
            MultiResult::Delete => OpCode::Delete.code(),
            MultiResult::Check => OpCode::Check.code(),
            MultiResult::GetData { .. } => OpCode::GetData.code(),
            MultiResult::GetChildren { .. } => OpCode::GetChildren.code(),
            MultiResult::Error(_) => OpCode::Error.code(),
        }
    }

    fn write(&self, buf: &mut impl BufMut) {
        let err = match self {
            MultiResult::Error(err) => *err,
            _ => 0,
        };
        MultiHeader {
            op: self.op_code(),
            done: false,
            err,
        }
        .write(buf);
        match self {
            MultiResult::Create { path } => write_string(buf, path),
            MultiResult::Create2 { path, stat } => {
                write_string(buf, path);
                stat.write(buf);
            }
            MultiResult::SetData { stat } => stat.write(buf),
            MultiResult::Delete | MultiResult::Check => {}
            MultiResult::GetData { data, stat } => {
                write_buffer(buf, data);
                stat.write(buf);
            }
            MultiResult::GetChildren { children } => write_string_vec(buf, children),
            MultiResult::Error(err) => write_i32(buf, *err),
        }
    }

    fn read(r: &mut Reader<'_>, header: &MultiHeader) -> Result<Self, DecodeError> {
        let bad = DecodeError::BadMultiOp {
            op: header.op,
            within: "multi response",
        };
        if header.op == OpCode::Error.code() {
            // MultiResponse takes the code from the ErrorResponse body, not the header.
            return Ok(MultiResult::Error(r.read_i32()?));
        }
        let Some(code) = OpCode::from_code(header.op) else {
            return Err(bad);
        };
        Ok(match code {
            OpCode::Create => MultiResult::Create {
                path: r.read_string_or_empty()?,
            },
            OpCode::Create2 => MultiResult::Create2 {
                path: r.read_string_or_empty()?,
                stat: Stat::read(r)?,
            },
            OpCode::SetData => MultiResult::SetData {
                stat: Stat::read(r)?,
            },
            OpCode::Delete => MultiResult::Delete,
            OpCode::Check => MultiResult::Check,
            OpCode::GetData => MultiResult::GetData {
                data: Bytes::from(r.read_buffer_or_empty()?),
                stat: Stat::read(r)?,
            },
            OpCode::GetChildren => MultiResult::GetChildren {
                children: r.read_string_vec()?,
            },
            _ => return Err(bad),
        })
    }
}

/// A reply body, one variant per record `FinalRequestProcessor` sends.
///
/// Which variant answers which request:
///
/// | request | response |
/// | --- | --- |
/// | ping, auth, delete, check, setWatches(2), checkWatches, removeWatches, closeSession | `Empty` |
/// | create | `Create` |
/// | create2, createContainer, createTTL | `Create2` |
/// | exists, setData, setACL | `Stat` |
/// | getData | `GetData` |
/// | getACL | `GetAcl` |
/// | getChildren / getChildren2 | `GetChildren` / `GetChildren2` |
/// | sync | `Sync` (echoes the path) |
/// | multi, multiRead | `Multi` |
/// | addWatch | `AddWatch` |
/// | getEphemerals, getAllChildrenNumber, whoAmI | the same-named variant |
///
/// A reply whose header has a non-zero `err` carries no body (see [`write_reply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// No body.
    Empty,
    /// `CreateResponse`.
    Create { path: String },
    /// `Create2Response`.
    Create2 { path: String, stat: Stat },
    /// `ExistsResponse`, `SetDataResponse` or `SetACLResponse`: a lone `Stat`.
    Stat(Stat),
    /// `GetDataResponse`. The data is shared with the tree, not copied.
    GetData { data: Bytes, stat: Stat },
    /// `GetACLResponse`.
    GetAcl { acl: Vec<Acl>, stat: Stat },
    /// `GetChildrenResponse`.
    GetChildren { children: Vec<String> },
    /// `GetChildren2Response`.
    GetChildren2 { children: Vec<String>, stat: Stat },
    /// `SyncResponse`: the request's path.
    Sync { path: String },
    /// `MultiResponse`: per result a `MultiHeader` and its body, then `{-1, true, -1}`.
    Multi(Vec<MultiResult>),
    /// `GetEphemeralsResponse`.
    GetEphemerals { paths: Vec<String> },
    /// `GetAllChildrenNumberResponse`.
    GetAllChildrenNumber { total: i32 },
    /// `WhoAmIResponse`.
    WhoAmI { client_info: Vec<ClientInfo> },
    /// The addWatch reply: `ErrorResponse{err: 0}`, i.e. four zero bytes.
    AddWatch,
}

impl Response {
    /// Appends the body (no header).
    pub fn encode(&self, buf: &mut impl BufMut) {
        match self {
            Response::Empty => {}
            Response::Create { path } | Response::Sync { path } => write_string(buf, path),
            Response::Create2 { path, stat } => {
                write_string(buf, path);
                stat.write(buf);
            }
            Response::Stat(stat) => stat.write(buf),
            Response::GetData { data, stat } => {
                write_buffer(buf, data);
                stat.write(buf);
            }
            Response::GetAcl { acl, stat } => {
                write_record_vec(buf, acl);
                stat.write(buf);
            }
            Response::GetChildren { children } => write_string_vec(buf, children),
            Response::GetChildren2 { children, stat } => {
                write_string_vec(buf, children);
                stat.write(buf);
            }
            Response::Multi(results) => {
                for result in results {
                    result.write(buf);
                }
                MultiHeader::DONE.write(buf);
            }
            Response::GetEphemerals { paths } => write_string_vec(buf, paths),
            Response::GetAllChildrenNumber { total } => write_i32(buf, *total),
            Response::WhoAmI { client_info } => write_record_vec(buf, client_info),
            Response::AddWatch => write_i32(buf, 0),
        }
    }

    /// Decodes the body of a successful (`err == 0`) reply to a request with op code `op`.
    /// Bytes after the record are ignored, as ZooKeeper's client does.
    pub fn decode(op: i32, body: &[u8]) -> Result<Response, DecodeError> {
        let Some(code) = OpCode::from_code(op) else {
            return Err(DecodeError::UnknownOpCode(op));
        };
        let r = &mut Reader::new(body);
        Ok(match code {
            OpCode::Ping
            | OpCode::Auth
            | OpCode::Delete
            | OpCode::Check
            | OpCode::SetWatches
            | OpCode::SetWatches2
            | OpCode::CheckWatches
            | OpCode::RemoveWatches
            | OpCode::CloseSession => Response::Empty,
            OpCode::Create => Response::Create {
                path: r.read_string_or_empty()?,
            },
            OpCode::Create2 | OpCode::CreateContainer | OpCode::CreateTtl => Response::Create2 {
                path: r.read_string_or_empty()?,
                stat: Stat::read(r)?,
            },
            OpCode::Exists | OpCode::SetData | OpCode::SetAcl => Response::Stat(Stat::read(r)?),
            OpCode::GetData => Response::GetData {
                data: Bytes::from(r.read_buffer_or_empty()?),
                stat: Stat::read(r)?,
            },
            OpCode::GetAcl => Response::GetAcl {
                acl: read_acl_vec(r)?,
                stat: Stat::read(r)?,
            },
            OpCode::GetChildren => Response::GetChildren {
                children: r.read_string_vec()?,
            },
            OpCode::GetChildren2 => Response::GetChildren2 {
                children: r.read_string_vec()?,
                stat: Stat::read(r)?,
            },
            OpCode::Sync => Response::Sync {
                path: r.read_string_or_empty()?,
            },
            OpCode::Multi | OpCode::MultiRead => {
                // Bounded by the input: each result consumes at least a 9-byte header.
                let mut results = Vec::new();
                loop {
                    let header = MultiHeader::read(r)?;
                    if header.done {
                        break Response::Multi(results);
                    }
                    results.push(MultiResult::read(r, &header)?);
                }
            }
            OpCode::GetEphemerals => Response::GetEphemerals {
                paths: r.read_string_vec()?,
            },
            OpCode::GetAllChildrenNumber => Response::GetAllChildrenNumber {
                total: r.read_i32()?,
            },
            OpCode::WhoAmI => Response::WhoAmI {
                client_info: r.read_vec(8, ClientInfo::read)?.unwrap_or_default(),
            },
            OpCode::AddWatch => {
                let _err = r.read_i32()?;
                Response::AddWatch
            }
            OpCode::Notification
            | OpCode::Reconfig
            | OpCode::DeleteContainer
            | OpCode::Sasl
            | OpCode::CreateSession
            | OpCode::Error => return Err(DecodeError::Unsupported(code)),
        })
    }
}

/// Appends a whole reply frame: length prefix, `header`, then `response` — unless `header.err`
/// is non-zero, in which case the reply is the header alone (clients read a body only when `err`
/// is 0). Pass [`Response::Empty`] for ops without a body.
pub fn write_reply(buf: &mut BytesMut, header: &ReplyHeader, response: &Response) {
    write_frame(buf, |b| {
        header.write(b);
        if header.err == 0 {
            response.encode(b);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::decode_frame;
    use crate::request::tests::acl;
    use crate::types::{xid, ErrorCode};
    use proptest::prelude::*;

    fn stat(seed: i64) -> Stat {
        Stat {
            czxid: seed,
            mzxid: seed + 1,
            ctime: seed + 2,
            mtime: seed + 3,
            version: 4,
            cversion: 5,
            aversion: 6,
            ephemeral_owner: seed + 7,
            data_length: 8,
            num_children: 9,
            pzxid: seed + 10,
        }
    }

    /// A request op each response answers, for decoding.
    fn op_for(rsp: &Response) -> OpCode {
        match rsp {
            Response::Empty => OpCode::Delete,
            Response::Create { .. } => OpCode::Create,
            Response::Create2 { .. } => OpCode::CreateTtl,
            Response::Stat(_) => OpCode::Exists,
            Response::GetData { .. } => OpCode::GetData,
            Response::GetAcl { .. } => OpCode::GetAcl,
            Response::GetChildren { .. } => OpCode::GetChildren,
            Response::GetChildren2 { .. } => OpCode::GetChildren2,
            Response::Sync { .. } => OpCode::Sync,
            Response::Multi(_) => OpCode::Multi,
            Response::GetEphemerals { .. } => OpCode::GetEphemerals,
            Response::GetAllChildrenNumber { .. } => OpCode::GetAllChildrenNumber,
            Response::WhoAmI { .. } => OpCode::WhoAmI,
            Response::AddWatch => OpCode::AddWatch,
        }
    }

    fn check_roundtrip(rsp: &Response) {
        let mut body = Vec::new();
        rsp.encode(&mut body);
        let op = op_for(rsp).code();
        assert_eq!(Response::decode(op, &body).as_ref(), Ok(rsp), "{rsp:?}");
        for n in 0..body.len() {
            assert!(
                Response::decode(op, &body[..n]).is_err(),
                "prefix {n} of {rsp:?} decoded"
            );
        }
    }

    fn every_response() -> Vec<Response> {
        vec![
            Response::Empty,
            Response::Create { path: "/c".into() },
            Response::Create2 {
                path: "/c2".into(),
                stat: stat(1),
            },
            Response::Stat(stat(2)),
            Response::GetData {
                data: Bytes::from_static(b"hello"),
                stat: stat(3),
            },
            Response::GetAcl {
                acl: Acl::open_unsafe(),
                stat: stat(4),
            },
            Response::GetChildren {
                children: vec!["a".into(), "b".into()],
            },
            Response::GetChildren2 {
                children: vec![],
                stat: stat(5),
            },
            Response::Sync { path: "/".into() },
            Response::Multi(vec![
                MultiResult::Create { path: "/m".into() },
                MultiResult::Create2 {
                    path: "/m2".into(),
                    stat: stat(6),
                },
                MultiResult::SetData { stat: stat(7) },
                MultiResult::Delete,
                MultiResult::Check,
                MultiResult::GetData {
                    data: Bytes::from_static(&[0]),
                    stat: stat(8),
                },
                MultiResult::GetChildren {
                    children: vec!["x".into()],
                },
                MultiResult::Error(ErrorCode::NoNode.code()),
            ]),
            Response::Multi(vec![]),
            Response::GetEphemerals {
                paths: vec!["/e1".into()],
            },
            Response::GetAllChildrenNumber { total: 42 },
            Response::WhoAmI {
                client_info: vec![ClientInfo {
                    auth_scheme: "ip".into(),
                    user: "127.0.0.1".into(),
                }],
            },
            Response::AddWatch,
        ]
    }

    #[test]
    fn every_response_roundtrips_and_every_prefix_fails() {
        for rsp in every_response() {
            check_roundtrip(&rsp);
        }
    }

    #[test]
    fn ops_map_to_the_records_final_request_processor_sends() {
        let s = stat(1);
        let mut stat_body = Vec::new();
        s.write(&mut stat_body);
        for op in [OpCode::Exists, OpCode::SetData, OpCode::SetAcl] {
            assert_eq!(
                Response::decode(op.code(), &stat_body),
                Ok(Response::Stat(s))
            );
        }
        let mut create2 = Vec::new();
        Response::Create2 {
            path: "/p".into(),
            stat: s,
        }
        .encode(&mut create2);
        for op in [OpCode::Create2, OpCode::CreateContainer, OpCode::CreateTtl] {
            assert!(matches!(
                Response::decode(op.code(), &create2),
                Ok(Response::Create2 { .. })
            ));
        }
        for op in [
            OpCode::Ping,
            OpCode::Auth,
            OpCode::Delete,
            OpCode::SetWatches,
            OpCode::SetWatches2,
            OpCode::CheckWatches,
            OpCode::RemoveWatches,
            OpCode::CloseSession,
        ] {
            assert_eq!(Response::decode(op.code(), &[]), Ok(Response::Empty));
        }
        assert_eq!(
            Response::decode(12345, &[]),
            Err(DecodeError::UnknownOpCode(12345))
        );
        assert_eq!(
            Response::decode(16, &[]),
            Err(DecodeError::Unsupported(OpCode::Reconfig))
        );
    }

    #[test]
    fn multi_error_result_matches_hand_encoding() {
        // A multi whose first op failed with NoNode and whose second was rolled back.
        let rsp = Response::Multi(vec![
            MultiResult::Error(ErrorCode::NoNode.code()),
            MultiResult::Error(ErrorCode::RuntimeInconsistency.code()),
        ]);
        let mut v = Vec::new();
        rsp.encode(&mut v);
        let expected = [
            0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0x9b, // {-1, false, -101}
            0xff, 0xff, 0xff, 0x9b, // ErrorResponse{-101}
            0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0xfe, // {-1, false, -2}
            0xff, 0xff, 0xff, 0xfe, // ErrorResponse{-2}
            0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff, // done
        ];
        assert_eq!(v, expected);
    }

    #[test]
    fn multi_success_headers_carry_err_zero() {
        let mut v = Vec::new();
        Response::Multi(vec![
            MultiResult::Create { path: "/a".into() },
            MultiResult::Delete,
        ])
        .encode(&mut v);
        let expected = [
            0, 0, 0, 1, 0, 0, 0, 0, 0, // {create, false, 0}
            0, 0, 0, 2, b'/', b'a', // CreateResponse
            0, 0, 0, 2, 0, 0, 0, 0, 0, // {delete, false, 0}
            0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff,
        ];
        assert_eq!(v, expected);
    }

    #[test]
    fn multi_response_with_unknown_result_type_is_an_error() {
        let mut v = Vec::new();
        MultiHeader {
            op: 3,
            done: false,
            err: 0,
        }
        .write(&mut v);
        assert!(matches!(
            Response::decode(14, &v),
            Err(DecodeError::BadMultiOp { op: 3, .. })
        ));
    }

    #[test]
    fn get_data_reply_frame_matches_hand_encoding() {
        let mut buf = BytesMut::new();
        write_reply(
            &mut buf,
            &ReplyHeader {
                xid: 5,
                zxid: 0x10,
                err: 0,
            },
            &Response::GetData {
                data: Bytes::from_static(b"hi"),
                stat: Stat::default(),
            },
        );
        let mut expected = vec![0, 0, 0, 90]; // 16 header + 6 data + 68 stat
        expected.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0, 0, 0, 2, b'h', b'i']);
        expected.extend_from_slice(&[0; 68]);
        assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn error_reply_has_no_body() {
        let mut buf = BytesMut::new();
        let header = ReplyHeader {
            xid: 3,
            zxid: 9,
            err: ErrorCode::NoNode.code(),
        };
        write_reply(&mut buf, &header, &Response::Stat(stat(1)));
        assert_eq!(buf.len(), 4 + 16);
        let frame = decode_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(ReplyHeader::split(&frame), Ok((header, &[][..])));
    }

    #[test]
    fn ping_reply_is_a_bare_header() {
        let mut buf = BytesMut::new();
        write_reply(
            &mut buf,
            &ReplyHeader {
                xid: xid::PING,
                zxid: 1,
                err: 0,
            },
            &Response::Empty,
        );
        assert_eq!(
            &buf[..],
            &[0, 0, 0, 16, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
        );
    }

    #[test]
    fn lying_children_count_is_an_error() {
        let mut body = i32::MAX.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            Response::decode(8, &body),
            Err(DecodeError::LengthTooLarge { .. })
        ));
        assert!(matches!(
            Response::decode(107, &body),
            Err(DecodeError::LengthTooLarge { .. })
        ));
    }

    // ---- property tests ----

    fn any_stat() -> impl Strategy<Value = Stat> {
        (
            (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()),
            (any::<i32>(), any::<i32>(), any::<i32>()),
            (any::<i64>(), any::<i32>(), any::<i32>(), any::<i64>()),
        )
            .prop_map(
                |(
                    (czxid, mzxid, ctime, mtime),
                    (version, cversion, aversion),
                    (ephemeral_owner, data_length, num_children, pzxid),
                )| Stat {
                    czxid,
                    mzxid,
                    ctime,
                    mtime,
                    version,
                    cversion,
                    aversion,
                    ephemeral_owner,
                    data_length,
                    num_children,
                    pzxid,
                },
            )
    }

    fn text() -> impl Strategy<Value = String> {
        "\\PC{0,10}"
    }

    fn texts() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(text(), 0..4)
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..24)
    }

    fn multi_result() -> impl Strategy<Value = MultiResult> {
        prop_oneof![
            text().prop_map(|path| MultiResult::Create { path }),
            (text(), any_stat()).prop_map(|(path, stat)| MultiResult::Create2 { path, stat }),
            any_stat().prop_map(|stat| MultiResult::SetData { stat }),
            Just(MultiResult::Delete),
            Just(MultiResult::Check),
            (bytes(), any_stat()).prop_map(|(data, stat)| MultiResult::GetData {
                data: data.into(),
                stat
            }),
            texts().prop_map(|children| MultiResult::GetChildren { children }),
            any::<i32>().prop_map(MultiResult::Error),
        ]
    }

    fn response() -> impl Strategy<Value = Response> {
        prop_oneof![
            Just(Response::Empty),
            Just(Response::AddWatch),
            text().prop_map(|path| Response::Create { path }),
            (text(), any_stat()).prop_map(|(path, stat)| Response::Create2 { path, stat }),
            any_stat().prop_map(Response::Stat),
            (bytes(), any_stat()).prop_map(|(data, stat)| Response::GetData {
                data: data.into(),
                stat
            }),
            (acl(), any_stat()).prop_map(|(acl, stat)| Response::GetAcl { acl, stat }),
            texts().prop_map(|children| Response::GetChildren { children }),
            (texts(), any_stat())
                .prop_map(|(children, stat)| Response::GetChildren2 { children, stat }),
            text().prop_map(|path| Response::Sync { path }),
            proptest::collection::vec(multi_result(), 0..5).prop_map(Response::Multi),
            texts().prop_map(|paths| Response::GetEphemerals { paths }),
            any::<i32>().prop_map(|total| Response::GetAllChildrenNumber { total }),
            proptest::collection::vec(
                (text(), text()).prop_map(|(auth_scheme, user)| ClientInfo { auth_scheme, user }),
                0..3
            )
            .prop_map(|client_info| Response::WhoAmI { client_info }),
        ]
    }

    proptest! {
        #[test]
        fn responses_roundtrip_through_reply_frames(rsp in response(), xid in any::<i32>(), zxid in any::<i64>()) {
            let mut buf = BytesMut::new();
            let header = ReplyHeader { xid, zxid, err: 0 };
            write_reply(&mut buf, &header, &rsp);
            let frame = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
            let (decoded_header, body) = ReplyHeader::split(&frame).unwrap();
            prop_assert_eq!(decoded_header, header);
            let op = op_for(&rsp).code();
            prop_assert_eq!(Response::decode(op, body), Ok(rsp));
            for n in 0..body.len() {
                prop_assert!(Response::decode(op, &body[..n]).is_err());
            }
        }

        #[test]
        fn arbitrary_bodies_never_panic(op in prop_oneof![-12i32..=23, 99i32..=108], body in proptest::collection::vec(any::<u8>(), 0..160)) {
            let _ = Response::decode(op, &body);
        }
    }
}
