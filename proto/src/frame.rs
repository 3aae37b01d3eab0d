//! Length-prefixed framing of the client port: every packet in either direction is a 4-byte
//! big-endian length followed by that many bytes. A brand-new connection may instead open with a
//! four-letter word (`ruok`, `stat`, ...), which ZooKeeper recognises by its first 4 bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Size of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// ZooKeeper's default `jute.maxbuffer` (0xfffff bytes, just under 1 MiB): the usual frame bound.
pub const JUTE_MAXBUFFER_DEFAULT: usize = 0xfffff;

/// A frame header that can never be valid; the connection should be closed (ZooKeeper's
/// "Len error").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix is negative.
    #[error("negative frame length {0}")]
    NegativeLength(i32),
    /// The length prefix exceeds the configured maximum.
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
}

/// Splits one complete frame off the front of `buf`.
///
/// Returns `Ok(None)` while `buf` does not yet hold a whole frame (nothing is consumed), the
/// frame's payload (without its prefix) once it does, and an error as soon as the prefix is
/// negative or above `max_frame_bytes`, even before the payload arrives.
pub fn decode_frame(
    buf: &mut BytesMut,
    max_frame_bytes: usize,
) -> Result<Option<Bytes>, FrameError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX_BYTES) else {
        return Ok(None);
    };
    let mut first4 = [0u8; LENGTH_PREFIX_BYTES];
    first4.copy_from_slice(prefix);
    let len = i32::from_be_bytes(first4);
    let Ok(len_bytes) = usize::try_from(len) else {
        return Err(FrameError::NegativeLength(len));
    };
    if len_bytes > max_frame_bytes {
        return Err(FrameError::TooLarge {
            len: len_bytes,
            max: max_frame_bytes,
        });
    }
    // len_bytes <= max_frame_bytes <= usize::MAX, and the prefix is 4 bytes: saturating is exact
    // except at usize::MAX where no buffer could hold it anyway.
    let frame_bytes = len_bytes.saturating_add(LENGTH_PREFIX_BYTES);
    if buf.len() < frame_bytes {
        buf.reserve(frame_bytes - buf.len());
        return Ok(None);
    }
    buf.advance(LENGTH_PREFIX_BYTES);
    Ok(Some(buf.split_to(len_bytes).freeze()))
}

/// Appends one frame to `buf`: a length prefix, then whatever `write_payload` writes.
///
/// # Panics
/// If the payload exceeds `i32::MAX` bytes (we never build such a message).
pub fn write_frame(buf: &mut BytesMut, write_payload: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_i32(0);
    write_payload(buf);
    let payload_bytes = buf.len() - start - LENGTH_PREFIX_BYTES;
    let Ok(len) = i32::try_from(payload_bytes) else {
        panic!("frame payload of {payload_bytes} bytes exceeds i32::MAX");
    };
    buf[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&len.to_be_bytes());
}

macro_rules! four_letter_words {
    ($($variant:ident = $word:literal,)*) => {
        /// A four-letter admin command (`FourLetterCommands`), sent in place of the first frame.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum FourLetterWord {
            $(#[doc = concat!("`", $word, "`")] $variant,)*
        }

        impl FourLetterWord {
            /// Every word ZooKeeper 3.9 knows.
            pub const ALL: &'static [FourLetterWord] = &[$(Self::$variant,)*];

            /// The word as sent.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $word,)*
                }
            }
        }

        /// The four-letter word spelled by the first 4 bytes of a new connection, if any.
        /// Anything else is the length prefix of a `ConnectRequest`.
        pub fn four_letter_word(first4: [u8; 4]) -> Option<FourLetterWord> {
            match &first4 {
                $(w if w == $word.as_bytes() => Some(FourLetterWord::$variant),)*
                _ => None,
            }
        }
    };
}

four_letter_words! {
    Ruok = "ruok",
    Srvr = "srvr",
    Stat = "stat",
    Mntr = "mntr",
    Cons = "cons",
    Conf = "conf",
    Envi = "envi",
    Wchs = "wchs",
    Wchc = "wchc",
    Wchp = "wchp",
    Dump = "dump",
    Isro = "isro",
    Crst = "crst",
    Srst = "srst",
    Dirs = "dirs",
    Hash = "hash",
    Gtmk = "gtmk",
    Stmk = "stmk",
}

impl std::fmt::Display for FourLetterWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partial_prefix_needs_more() {
        let mut buf = BytesMut::from(&[0u8, 0, 0][..]);
        assert_eq!(decode_frame(&mut buf, 100), Ok(None));
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn partial_payload_needs_more_and_consumes_nothing() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, b'a', b'b'][..]);
        assert_eq!(decode_frame(&mut buf, 100), Ok(None));
        assert_eq!(&buf[..], &[0, 0, 0, 3, b'a', b'b']);
        buf.extend_from_slice(b"c");
        assert_eq!(
            decode_frame(&mut buf, 100),
            Ok(Some(Bytes::from_static(b"abc")))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn back_to_back_frames_split_in_order() {
        let mut buf = BytesMut::new();
        write_frame(&mut buf, |b| b.put_slice(b"one"));
        write_frame(&mut buf, |b| b.put_slice(b""));
        write_frame(&mut buf, |b| b.put_slice(b"three"));
        assert_eq!(&buf[..7], &[0, 0, 0, 3, b'o', b'n', b'e']);
        assert_eq!(
            decode_frame(&mut buf, 10),
            Ok(Some(Bytes::from_static(b"one")))
        );
        assert_eq!(decode_frame(&mut buf, 10), Ok(Some(Bytes::new())));
        assert_eq!(
            decode_frame(&mut buf, 10),
            Ok(Some(Bytes::from_static(b"three")))
        );
        assert_eq!(decode_frame(&mut buf, 10), Ok(None));
    }

    #[test]
    fn negative_length_is_an_error() {
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(
            decode_frame(&mut buf, 100),
            Err(FrameError::NegativeLength(-1))
        );
    }

    #[test]
    fn oversized_length_is_an_error_before_the_payload_arrives() {
        let mut buf = BytesMut::from(&101i32.to_be_bytes()[..]);
        assert_eq!(
            decode_frame(&mut buf, 100),
            Err(FrameError::TooLarge { len: 101, max: 100 })
        );
        // A frame of exactly the maximum is fine.
        let mut buf = BytesMut::from(&100i32.to_be_bytes()[..]);
        buf.extend_from_slice(&[0; 100]);
        assert_eq!(
            decode_frame(&mut buf, 100).map(|f| f.map(|b| b.len())),
            Ok(Some(100))
        );
    }

    #[test]
    fn four_letter_words_are_recognised() {
        assert_eq!(four_letter_word(*b"ruok"), Some(FourLetterWord::Ruok));
        assert_eq!(four_letter_word(*b"dirs"), Some(FourLetterWord::Dirs));
        assert_eq!(four_letter_word(*b"RUOK"), None);
        assert_eq!(four_letter_word([0, 0, 0, 45]), None);
        for word in FourLetterWord::ALL {
            let mut first4 = [0u8; 4];
            first4.copy_from_slice(word.as_str().as_bytes());
            assert_eq!(four_letter_word(first4), Some(*word));
        }
        assert_eq!(FourLetterWord::ALL.len(), 18);
    }

    #[test]
    fn four_letter_words_exceed_the_default_frame_bound() {
        // So a word can never be mistaken for the length of a real ConnectRequest.
        for word in FourLetterWord::ALL {
            let mut first4 = [0u8; 4];
            first4.copy_from_slice(word.as_str().as_bytes());
            let as_len = i32::from_be_bytes(first4);
            assert!(usize::try_from(as_len).is_ok_and(|n| n > JUTE_MAXBUFFER_DEFAULT));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in 0usize..64) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decode_frame(&mut buf, max) {}
        }

        #[test]
        fn written_frames_read_back(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..32), 0..8)) {
            let mut buf = BytesMut::new();
            for p in &payloads {
                write_frame(&mut buf, |b| b.put_slice(p));
            }
            for p in &payloads {
                let frame = decode_frame(&mut buf, 32).unwrap().unwrap();
                prop_assert_eq!(&frame[..], &p[..]);
            }
            prop_assert!(buf.is_empty());
        }
    }
}
