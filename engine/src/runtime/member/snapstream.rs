//! Snapshots for lagging learners, streamed through files.
//!
//! The leader's apply thread writes a frozen view of the machine to a file on its own thread
//! ([`serialize_to_file`]); the driver then sends it in chunks of
//! [`SNAP_CHUNK_BYTES`](super::super::forward::SNAP_CHUNK_BYTES), only while the learner's
//! queue is short ([`OutgoingSnap::pump`]), so a big snapshot neither fills memory nor the
//! queue. The learner writes the chunks to a file ([`IncomingSnap`]), checks its length and
//! checksum, syncs it, and only then hands its core the SNAP; installing it restores the
//! machine and writes the snapshot file from that file. Both files are removed when dropped.
//!
//! The driver never touches these files itself: a reader thread per outgoing snapshot reads
//! [`READ_AHEAD_CHUNKS`] ahead, and a writer thread per incoming one writes and syncs, so a
//! slow disk never holds up the driver (and with it heartbeats and every other learner).
//! Dropping either end stops its thread, which removes the file.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use bytes::Bytes;

use super::super::forward::{Forwarding, SNAP_CHUNK_BYTES};
use crate::transport::{Stream, Transport};
use crate::zab::PeerId;
use crate::{Epoch, Snapshot, Zxid};

/// The largest snapshot a learner accepts.
pub(crate) const SNAP_BYTES_MAX: u64 = 64 << 30;

/// Chunks of a snapshot kept queued for a learner at most: the rest waits in the file.
const PUMP_QUEUED_MAX: usize = 32;
/// Chunks a reader thread reads ahead of the driver.
pub(crate) const READ_AHEAD_CHUNKS: usize = 8;
/// Chunks received and not yet written that a learner holds at most: past it, the driver
/// stops reading its peers until the writer thread catches up.
pub(crate) const WRITE_BEHIND_CHUNKS: usize = 64;
/// Snapshots a leader streams to learners at once: each is a file as big as the state. A
/// learner that needs one past it is sent back to sync again later.
pub(crate) const OUTGOING_SNAPSHOTS_MAX: usize = 2;

/// A file removed when dropped (unless kept).
#[derive(Debug)]
pub(crate) struct TempFile {
    pub(crate) path: PathBuf,
}

impl Drop for TempFile {
    /// Removed on a thread of its own: unlinking a file as big as the state can take a while,
    /// and the driver drops these. A removal a crash cuts short leaves a `.tmp` file, which
    /// the next start removes.
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.path);
        let removed = std::thread::Builder::new().name("coord-rm".into()).spawn({
            let path = path.clone();
            move || {
                let _ = fs::remove_file(path);
            }
        });
        if removed.is_err() {
            let _ = fs::remove_file(&path);
        }
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
    /// From the reader thread, which owns the file.
    chunks: mpsc::Receiver<Result<Bytes, String>>,
    remaining: u64,
    crc: u32,
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
        let (chunks_tx, chunks) = mpsc::sync_channel(READ_AHEAD_CHUNKS);
        let (len, temp) = (snap.len, snap.file);
        std::thread::Builder::new()
            .name("coord-snap-read".into())
            .spawn(move || read_chunks(file, len, &chunks_tx, temp))
            .map_err(|e| format!("starting a snapshot reader: {e}"))?;
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
            chunks,
            remaining: snap.len,
            crc: snap.crc,
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
                let chunk = match sending.chunks.try_recv() {
                    Ok(chunk) => chunk?,
                    // The reader is behind: more at the next pump.
                    Err(mpsc::TryRecvError::Empty) => return Ok(Pumped::More),
                    Err(mpsc::TryRecvError::Disconnected) => {
                        return Err("the snapshot reader stopped early".into())
                    }
                };
                sending.remaining = sending.remaining.saturating_sub(chunk.len() as u64);
                send(transport, to, &Forwarding::SnapChunk { data: chunk })?;
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

/// The reader thread of an outgoing snapshot: `len` bytes of `file` in chunks, until they are
/// all read or nobody takes them; the file goes when it ends.
fn read_chunks(
    file: File,
    len: u64,
    chunks: &mpsc::SyncSender<Result<Bytes, String>>,
    _temp: TempFile,
) {
    let mut reader = BufReader::with_capacity(SNAP_CHUNK_BYTES, file);
    let mut remaining = len;
    while remaining > 0 {
        let n = remaining.min(SNAP_CHUNK_BYTES as u64) as usize;
        let mut chunk = vec![0; n];
        let read = reader
            .read_exact(&mut chunk)
            .map(|()| Bytes::from(chunk))
            .map_err(|e| format!("reading a snapshot to send: {e}"));
        let failed = read.is_err();
        if chunks.send(read).is_err() || failed {
            return;
        }
        remaining -= n as u64;
    }
}

fn send(transport: &impl Transport, to: PeerId, message: &Forwarding) -> Result<(), String> {
    let mut frame = Vec::new();
    message.encode(&mut frame);
    transport
        .send(to, Stream::Replication, frame.into())
        .map_err(|e| e.to_string())
}

/// A snapshot arriving from the leader: the driver checks its length as chunks come and
/// hands them to a writer thread.
pub(crate) struct IncomingSnap {
    pub(crate) from: PeerId,
    len: u64,
    received: u64,
    writes: mpsc::Sender<Write_>,
    /// Chunks handed to the writer and not yet written.
    queued: Arc<AtomicUsize>,
}

enum Write_ {
    Chunk(Bytes),
    End { crc: u32 },
}

/// What the writer thread reports once a snapshot is whole: checked and durable, the file
/// to install; or why not.
pub(crate) type Received = Result<TempFile, String>;

impl IncomingSnap {
    /// Starts receiving into `path`; `done` is called on the writer thread with the outcome
    /// once [`IncomingSnap::end`] was called and everything before it written.
    pub(crate) fn begin(
        path: PathBuf,
        from: PeerId,
        len: u64,
        done: impl FnOnce(Received) + Send + 'static,
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
        // Unbounded in messages, bounded by its producer: the driver stops reading its peers
        // while WRITE_BEHIND_CHUNKS chunks wait here (`is_full`), so at most that many (of at
        // most a frame each) are queued, plus the end.
        let (writes, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer_queued = Arc::clone(&queued);
        std::thread::Builder::new()
            .name("coord-snap-write".into())
            .spawn(move || {
                // The driver stops reading its peers until it hears back: it must, whatever
                // happens here.
                let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    write_chunks(out, file, len, &rx, &writer_queued)
                }));
                match written {
                    Ok(Some(received)) => done(received),
                    Ok(None) => {}
                    Err(_) => done(Err("the snapshot writer failed".into())),
                }
            })
            .map_err(|e| format!("starting a snapshot writer: {e}"))?;
        Ok(IncomingSnap {
            from,
            len,
            received: 0,
            writes,
            queued,
        })
    }

    pub(crate) fn chunk(&mut self, data: Bytes) -> Result<(), String> {
        self.received += data.len() as u64;
        if self.received > self.len {
            return Err("the snapshot runs past its announced length".into());
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.writes
            .send(Write_::Chunk(data))
            .map_err(|_| "the snapshot writer stopped".to_string())
    }

    /// Whether the writer is [`WRITE_BEHIND_CHUNKS`] behind: read no more until it catches up.
    pub(crate) fn is_full(&self) -> bool {
        self.queued.load(Ordering::Acquire) >= WRITE_BEHIND_CHUNKS
    }

    /// The snapshot is complete: the writer checks it against `crc`, syncs it and reports.
    pub(crate) fn end(self, crc: u32) -> Result<(), String> {
        self.writes
            .send(Write_::End { crc })
            .map_err(|_| "the snapshot writer stopped".to_string())
    }
}

/// The writer thread of an incoming snapshot. `None` if the driver dropped it before its end
/// (the file goes with it).
fn write_chunks(
    out: File,
    file: TempFile,
    len: u64,
    writes: &mpsc::Receiver<Write_>,
    queued: &AtomicUsize,
) -> Option<Received> {
    let mut writer = BufWriter::with_capacity(1 << 20, out);
    let (mut written, mut crc) = (0u64, 0u32);
    let mut failed = None;
    loop {
        match writes.recv().ok()? {
            Write_::Chunk(data) => {
                queued.fetch_sub(1, Ordering::AcqRel);
                if failed.is_none() {
                    written += data.len() as u64;
                    crc = crc32c::crc32c_append(crc, &data);
                    if let Err(e) = writer.write_all(&data) {
                        failed = Some(format!("writing a received snapshot: {e}"));
                    }
                }
            }
            Write_::End { crc: expected } => {
                if let Some(reason) = failed {
                    return Some(Err(reason));
                }
                if written != len || crc != expected {
                    return Some(Err(format!(
                        "the snapshot received is damaged: {written} of {len} bytes, crc \
                         {crc:#010x} for {expected:#010x}"
                    )));
                }
                let synced = writer
                    .flush()
                    .and_then(|()| writer.get_ref().sync_all())
                    .map_err(|e| format!("syncing a received snapshot: {e}"));
                return Some(synced.map(|()| file));
            }
        }
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
        let (done_tx, done) = mpsc::channel();
        let mut received = None;
        let mut after = Vec::new();
        let mut most_queued = 0;
        loop {
            let pumped = out.pump(peer, &transport).unwrap();
            let frames: Vec<Bytes> = std::mem::take(&mut *transport.0.lock().unwrap());
            most_queued = most_queued.max(frames.len());
            for frame in frames {
                match Forwarding::decode(&frame).unwrap() {
                    Forwarding::SnapBegin { len, .. } => {
                        let done_tx = done_tx.clone();
                        incoming = Some(
                            IncomingSnap::begin(
                                receive_dir.path().join("in.tmp"),
                                peer,
                                len,
                                move |received| done_tx.send(received).unwrap(),
                            )
                            .unwrap(),
                        )
                    }
                    Forwarding::SnapChunk { data } => {
                        assert!(data.len() <= SNAP_CHUNK_BYTES);
                        incoming.as_mut().unwrap().chunk(data).unwrap();
                    }
                    Forwarding::SnapEnd { crc } => {
                        incoming.take().unwrap().end(crc).unwrap();
                        received = Some(done.recv().unwrap().unwrap());
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
        // The files go away with their owners (the sender's with its reader thread).
        let path = file.path.clone();
        drop(file);
        drop(out);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while path.exists() || fs::read_dir(dir.path()).unwrap().count() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "a snapshot file stays"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn a_damaged_or_overlong_snapshot_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = 0;
        let mut begin = |len: u64| {
            n += 1;
            let (tx, rx) = mpsc::channel();
            let path = dir.path().join(format!("in.{n}.tmp"));
            IncomingSnap::begin(path, PeerId(1), len, move |r| {
                let _ = tx.send(r);
            })
            .map(|snap| (snap, rx))
        };
        let (mut snap, done) = begin(4).unwrap();
        snap.chunk(Bytes::from_static(b"abcd")).unwrap();
        snap.end(crc32c::crc32c(b"abce")).unwrap();
        assert!(done.recv().unwrap().is_err(), "a bad checksum");
        let (mut snap, _) = begin(4).unwrap();
        assert!(snap.chunk(Bytes::from_static(b"abcde")).is_err());
        let (mut snap, done) = begin(4).unwrap();
        snap.chunk(Bytes::from_static(b"ab")).unwrap();
        snap.end(crc32c::crc32c(b"ab")).unwrap();
        assert!(done.recv().unwrap().is_err(), "short");
        assert!(begin(SNAP_BYTES_MAX + 1).is_err());
    }
}
