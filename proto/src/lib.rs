//! The ZooKeeper client wire protocol (jute), as ZooKeeper 3.9 speaks it on the client port.
//!
//! Every decoder is bounded: lengths and counts are checked against the bytes that remain before
//! anything is allocated, and malformed input is a [`DecodeError`], never a panic. Strings are raw
//! (paths are validated by the znode crate, not here).
//!
//! A server connection runs like this:
//!
//! 1. Read the first 4 bytes. If [`four_letter_word`] recognises them, answer the admin command
//!    and close. Otherwise they are the length prefix of the first frame.
//! 2. Cut frames with [`decode_frame`] (bounded by `jute.maxbuffer`). The first frame is a
//!    [`ConnectRequest`]; answer with a [`ConnectResponse`].
//! 3. Every later frame is a [`RequestHeader`] and a [`Request`] ([`Request::decode_frame`]).
//!    Answer with [`write_reply`]; push watch events with [`WatcherEvent::write_notification`].
//!
//! ```
//! use bytes::BytesMut;
//! use coord_proto::*;
//!
//! // The client's side, as bytes on the wire.
//! let mut wire = BytesMut::new();
//! let connect = ConnectRequest { timeout_ms: 30_000, ..Default::default() };
//! frame::write_frame(&mut wire, |b| connect.write(b));
//! Request::GetData { path: "/app".into(), watch: true }.write_frame(1, &mut wire);
//!
//! // The server's side.
//! let mut first4 = [0u8; 4];
//! first4.copy_from_slice(&wire[..4]);
//! assert_eq!(four_letter_word(first4), None);
//!
//! let frame = decode_frame(&mut wire, frame::JUTE_MAXBUFFER_DEFAULT).unwrap().unwrap();
//! let (connect, read_only_sent) = ConnectRequest::decode_detailed(&frame).unwrap();
//! let mut out = BytesMut::new();
//! ConnectResponse { timeout_ms: connect.timeout_ms, session_id: 0x100, passwd: vec![0; 16], ..Default::default() }
//!     .write_frame(&mut out, read_only_sent);
//!
//! let frame = decode_frame(&mut wire, frame::JUTE_MAXBUFFER_DEFAULT).unwrap().unwrap();
//! match Request::decode_frame(&frame) {
//!     Ok((header, Request::GetData { path, watch })) => {
//!         assert_eq!((path.as_str(), watch), ("/app", true));
//!         let reply = ReplyHeader { xid: header.xid, zxid: 7, err: ErrorCode::NoNode.code() };
//!         write_reply(&mut out, &reply, &Response::Empty);
//!     }
//!     Ok(_) => unreachable!(),
//!     // Unknown ops are answered Unimplemented, other bad bodies MarshallingError.
//!     Err(RequestFrameError::Body { header, error }) => { let _ = (header, error); }
//!     Err(_) => { /* no header: close the connection */ }
//! }
//! assert!(wire.is_empty());
//! ```

pub mod frame;
pub mod jute;
mod records;
mod request;
mod response;
mod types;

pub use frame::{decode_frame, four_letter_word, write_frame, FourLetterWord, FrameError};
pub use jute::{DecodeError, Reader, Record};
pub use records::*;
pub use request::*;
pub use response::*;
pub use types::*;
