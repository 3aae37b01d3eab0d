//! Snapshots for lagging learners, streamed through files.
//!
//! The leader's apply thread writes a frozen view of the machine to a file on its own thread
//! ([`serialize_to_file`]); the driver then sends it in chunks of
//! [`SNAP_CHUNK_BYTES`](super::super::forward::SNAP_CHUNK_BYTES), only while the learner's
//! queue is short ([`OutgoingSnap::pump`]), so a big snapshot neither fills memory nor the
//! queue. The learner writes the chunks to a file ([`IncomingSnap`]), checks its length and
//! checksum, syncs it, and only then hands its core the SNAP; installing it restores the
//! machine and writes the snapshot file from that file. Both files are removed when dropped.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use bytes::Bytes;

use super::super::forward::{Forwarding, SNAP_CHUNK_BYTES};
use crate::transport::{Stream, Transport};
use crate::zab::PeerId;
use crate::{Epoch, Snapshot, Zxid};

/// The largest snapshot a learner accepts.
pub(crate) const SNAP_BYTES_MAX: u64 = 64 << 30;

/// Chunks of a snapshot kept queued for a learner at most: the rest waits in the file.
const PUMP_QUEUED_MAX: usize = 32;

/// A file removed when dropped (unless kept).
#[derive(Debug)]
pub(crate) struct TempFile {
    pub(crate) path: PathBuf,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A snapshot written out for a learner: where, how long, its checksum.
#[derive(Debug)]
pub(crate) struct SnapFile {
    pub(crate) file: TempFile,
    pub(crate) len: u64,
    pub(crate) crc: u32,
}

/// Writes `snapshot` to `path`, returning its length and crc32c.
pub(crate) fn serialize_to_file(
    snapshot: &dyn Snapshot,
    path: PathBuf,
) -> Result<SnapFile, String> {
    struct Counting<W> {
        inner: W,
        len: u64,
        crc: u32,
    }
    impl<W: Write> Write for Counting<W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.len += n as u64;
            self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }
    let file = TempFile { path };
    let out = File::create(&file.path).map_err(|e| format!("{}: {e}", file.path.display()))?;
    let mut writer = Counting {
        inner: BufWriter::with_capacity(1 << 20, out),
        len: 0,
        crc: 0,
    };
    snapshot
        .write_to(&mut writer)
        .and_then(|()| writer.flush())
        .map_err(|e| format!("serializing a snapshot: {e}"))?;
    Ok(SnapFile {
        file,
        len: writer.len,
        crc: writer.crc,
    })
}

/// A snapshot on its way to a learner, and the learner's frames that must follow it.
pub(crate) struct OutgoingSnap {
    pub(crate) seq: u64,
    pub(crate) epoch: Epoch,
    pub(crate) zxid: Zxid,
    /// Replication frames for the learner that must follow the SNAP, oldest first.
    held: VecDeque<Bytes>,
    held_bytes: usize,
    state: SnapState,
}

enum SnapState {
    /// Being written to a file.
    Serializing,
    /// Written; it starts once what was queued for the learner before it is out.
    Ready(SnapFile),
    /// Going out in chunks.
    Sending(Sending),
    /// Out; the frames held behind it go out, as fast as the learner's queue drains.
    Releasing,
}

struct Sending {
    reader: BufReader<File>,
    remaining: u64,
    crc: u32,
    _file: TempFile,
}

/// What [`OutgoingSnap::pump`] left to do.
pub(crate) enum Pumped {
    /// More waits for room in the queue.
    More,
    /// The snapshot and every frame held behind it are queued.
    Done,
}

/// Frames kept queued for a learner at most while held frames are released.
const RELEASE_QUEUED_MAX: usize = 1024;
/// What may wait behind one snapshot for a learner; past it, the learner re-syncs.
const HELD_FRAMES_MAX: usize = 100_000;
const HELD_BYTES_MAX: usize = 256 << 20;

impl OutgoingSnap {
    pub(crate) fn new(seq: u64, epoch: Epoch, zxid: Zxid) -> OutgoingSnap {
        OutgoingSnap {
            seq,
            epoch,
            zxid,
            held: VecDeque::new(),
            held_bytes: 0,
            state: SnapState::Serializing,
        }
    }

    /// Whether it is past serializing (so [`OutgoingSnap::pump`] has work).
    pub(crate) fn is_moving(&self) -> bool {
        !matches!(self.state, SnapState::Serializing)
    }

    /// Serialized: it starts at the next [`OutgoingSnap::pump`] when the learner's earlier
    /// frames are out.
    pub(crate) fn ready(&mut self, snap: SnapFile) {
        self.state = SnapState::Ready(snap);
    }

    /// Holds a frame for the learner behind the snapshot; false if too much already waits.
    pub(crate) fn hold(&mut self, frame: Bytes) -> bool {
        if self.held.len() >= HELD_FRAMES_MAX || self.held_bytes + frame.len() > HELD_BYTES_MAX {
            return false;
        }
        self.held_bytes += frame.len();
        self.held.push_back(frame);
        true
    }

    /// The snapshot is serialized: announce it.
    pub(crate) fn start(
        &mut self,
        to: PeerId,
        snap: SnapFile,
        transport: &impl Transport,
    ) -> Result<(), String> {
        let file = File::open(&snap.file.path).map_err(|e| e.to_string())?;
        send(
            transport,
            to,
            &Forwarding::SnapBegin {
                epoch: self.epoch,
                zxid: self.zxid,
                len: snap.len,
            },
        )?;
        self.state = SnapState::Sending(Sending {
            reader: BufReader::with_capacity(SNAP_CHUNK_BYTES, file),
            remaining: snap.len,
            crc: snap.crc,
            _file: snap.file,
        });
        Ok(())
    }

    /// Sends chunks, then the held frames, while the learner's queue is short.
    pub(crate) fn pump(
        &mut self,
        to: PeerId,
        transport: &impl Transport,
    ) -> Result<Pumped, String> {
        if matches!(self.state, SnapState::Ready(_)) {
            let SnapState::Ready(snap) = std::mem::replace(&mut self.state, SnapState::Serializing)
            else {
                unreachable!("matched just above");
            };
            self.start(to, snap, transport)?;
        }
        if let SnapState::Sending(sending) = &mut self.state {
            loop {
                if transport.queued(to, Stream::Replication) >= PUMP_QUEUED_MAX {
                    return Ok(Pumped::More);
                }
                if sending.remaining == 0 {
                    send(transport, to, &Forwarding::SnapEnd { crc: sending.crc })?;
                    break;
                }
                let len = sending.remaining.min(SNAP_CHUNK_BYTES as u64) as usize;
                let mut chunk = vec![0; len];
                sending
                    .reader
                    .read_exact(&mut chunk)
                    .map_err(|e| format!("reading a snapshot to send: {e}"))?;
                sending.remaining -= len as u64;
                send(
                    transport,
                    to,
                    &Forwarding::SnapChunk {
                        data: Bytes::from(chunk),
                    },
                )?;
            }
            // Out: its file goes with the sending state.
            self.state = SnapState::Releasing;
        }
        if !matches!(self.state, SnapState::Releasing) {
            return Ok(Pumped::More);
        }
        while transport.queued(to, Stream::Replication) < RELEASE_QUEUED_MAX {
            let Some(frame) = self.held.pop_front() else {
                return Ok(Pumped::Done);
            };
            self.held_bytes -= frame.len();
            transport
                .send(to, Stream::Replication, frame)
                .map_err(|e| e.to_string())?;
        }
        Ok(Pumped::More)
    }
}

fn send(transport: &impl Transport, to: PeerId, message: &Forwarding) -> Result<(), String> {
    let mut frame = Vec::new();
    message.encode(&mut frame);
    transport
        .send(to, Stream::Replication, frame.into())
        .map_err(|e| e.to_string())
}

/// A snapshot arriving from the leader.
pub(crate) struct IncomingSnap {
    pub(crate) from: PeerId,
    pub(crate) epoch: Epoch,
    pub(crate) zxid: Zxid,
    len: u64,
    written: u64,
    crc: u32,
    writer: BufWriter<File>,
    file: TempFile,
}

impl IncomingSnap {
    pub(crate) fn begin(
        path: PathBuf,
        from: PeerId,
        epoch: Epoch,
        zxid: Zxid,
        len: u64,
    ) -> Result<IncomingSnap, String> {
        if len > SNAP_BYTES_MAX {
            return Err(format!(
                "a snapshot of {len} bytes is over {SNAP_BYTES_MAX}"
            ));
        }
        let file = TempFile { path };
        let out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&file.path)
            .map_err(|e| format!("{}: {e}", file.path.display()))?;
        Ok(IncomingSnap {
            from,
            epoch,
            zxid,
            len,
            written: 0,
            crc: 0,
            writer: BufWriter::with_capacity(1 << 20, out),
            file,
        })
    }

    pub(crate) fn chunk(&mut self, data: &[u8]) -> Result<(), String> {
        self.written += data.len() as u64;
        if self.written > self.len {
            return Err("the snapshot runs past its announced length".into());
        }
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.writer
            .write_all(data)
            .map_err(|e| format!("writing a received snapshot: {e}"))
    }

    /// The snapshot is complete: checked and durable, it is the file to install.
    pub(crate) fn end(mut self, crc: u32) -> Result<TempFile, String> {
        if self.written != self.len || crc != self.crc {
            return Err(format!(
                "the snapshot received is damaged: {} of {} bytes, crc {:#010x} for {crc:#010x}",
                self.written, self.len, self.crc
            ));
        }
        self.writer
            .flush()
            .and_then(|()| self.writer.get_ref().sync_all())
            .map_err(|e| format!("syncing a received snapshot: {e}"))?;
        Ok(self.file)
    }
}

/// A received snapshot file as the machine's snapshot bytes, copied as they are.
pub(crate) struct FileSnapshot(pub(crate) PathBuf);

impl Snapshot for FileSnapshot {
    fn write_to(&self, writer: &mut dyn Write) -> io::Result<()> {
        let mut file = BufReader::with_capacity(1 << 20, File::open(&self.0)?);
        io::copy(&mut file, writer).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Event, SendError};
    use std::sync::Mutex;

    /// Collects frames; reports as queued whatever the test has not drained yet.
    #[derive(Default)]
    struct Collect(Mutex<Vec<Bytes>>);

    impl Transport for Collect {
        fn send(&self, _: PeerId, _: Stream, frame: Bytes) -> Result<(), SendError> {
            self.0.lock().unwrap().push(frame);
            Ok(())
        }
        fn reset(&self, _: PeerId, _: Stream) {}
        fn queued(&self, _: PeerId, _: Stream) -> usize {
            self.0.lock().unwrap().len()
        }
        fn recv(&mut self) -> impl std::future::Future<Output = Option<Event>> + Send {
            std::future::pending()
        }
    }

    struct Big(Vec<u8>);
    impl Snapshot for Big {
        fn write_to(&self, writer: &mut dyn Write) -> io::Result<()> {
            writer.write_all(&self.0)
        }
    }

    #[test]
    fn a_snapshot_streams_in_chunks_through_a_short_queue_and_arrives_whole() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let snap = serialize_to_file(&Big(data.clone()), dir.path().join("out.tmp")).unwrap();
        assert_eq!(snap.len, data.len() as u64);
        let transport = Collect::default();
        let peer = PeerId(2);
        let mut out = OutgoingSnap::new(1, Epoch(3), Zxid::new(Epoch(3), 7));
        // What the leader sends the learner meanwhile waits behind the snapshot, in order.
        for i in 0..3000u32 {
            let mut frame = Vec::new();
            Forwarding::Proposed {
                id: u64::from(i),
                zxid: Zxid::ZERO,
            }
            .encode(&mut frame);
            assert!(out.hold(frame.into()));
        }
        out.start(peer, snap, &transport).unwrap();
        let receive_dir = tempfile::tempdir().unwrap();
        let mut incoming: Option<IncomingSnap> = None;
        let mut received = None;
        let mut after = Vec::new();
        let mut most_queued = 0;
        loop {
            let pumped = out.pump(peer, &transport).unwrap();
            let frames: Vec<Bytes> = std::mem::take(&mut *transport.0.lock().unwrap());
            most_queued = most_queued.max(frames.len());
            for frame in frames {
                match Forwarding::decode(&frame).unwrap() {
                    Forwarding::SnapBegin { epoch, zxid, len } => {
                        incoming = Some(
                            IncomingSnap::begin(
                                receive_dir.path().join("in.tmp"),
                                peer,
                                epoch,
                                zxid,
                                len,
                            )
                            .unwrap(),
                        )
                    }
                    Forwarding::SnapChunk { data } => {
                        assert!(data.len() <= SNAP_CHUNK_BYTES);
                        incoming.as_mut().unwrap().chunk(&data).unwrap();
                    }
                    Forwarding::SnapEnd { crc } => {
                        received = Some(incoming.take().unwrap().end(crc).unwrap());
                    }
                    Forwarding::Proposed { id, .. } => {
                        assert!(received.is_some(), "a held frame overtook the snapshot");
                        after.push(id);
                    }
                    other => panic!("{other:?}"),
                }
            }
            if matches!(pumped, Pumped::Done) {
                break;
            }
        }
        assert!(most_queued <= RELEASE_QUEUED_MAX, "{most_queued}");
        assert_eq!(after, (0..3000).collect::<Vec<u64>>());
        let file = received.unwrap();
        assert_eq!(fs::read(&file.path).unwrap(), data);
        // The files go away with their owners.
        let path = file.path.clone();
        drop(file);
        drop(out);
        assert!(!path.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_damaged_or_overlong_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = || dir.path().join("in.tmp");
        let begin = || IncomingSnap::begin(path(), PeerId(1), Epoch(1), Zxid::ZERO, 4).unwrap();
        let mut snap = begin();
        snap.chunk(b"abcd").unwrap();
        assert!(snap.end(crc32c::crc32c(b"abce")).is_err());
        let mut snap = begin();
        assert!(snap.chunk(b"abcde").is_err());
        let mut snap = begin();
        snap.chunk(b"ab").unwrap();
        assert!(snap.end(crc32c::crc32c(b"ab")).is_err());
        assert!(
            IncomingSnap::begin(path(), PeerId(1), Epoch(1), Zxid::ZERO, SNAP_BYTES_MAX + 1)
                .is_err()
        );
    }
}
