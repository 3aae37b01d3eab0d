//! Where the engine's files live: the operations the txn log's recovery relies on, behind a
//! trait, so that the real file system and a simulated one (which can crash at any operation
//! and lose or tear what was not synced) run the same code.
//!
//! Durability is what POSIX promises and no more: file data survives a crash once
//! [`StorageFile::sync_data`] returned; a file's creation, rename or removal once
//! [`Storage::sync_dir`] of its directory returned.

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};

mod os;
mod sim;

pub use os::OsStorage;
pub use sim::{SimStorage, TornWrites};

/// A file system, as the engine uses it.
pub trait Storage: Debug + Send + Sync {
    /// The whole contents of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// A file to read from the start, and its length: for files too big to read at once.
    fn open_read(&self, path: &Path) -> io::Result<(Box<dyn io::Read + Send>, u64)>;
    /// The paths of the files in `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Creates an empty file; fails if `path` exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for writing.
    fn open_write(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Replaces `to` (if it exists) with `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// A salt for a new log segment, never 0: random on a real disk; drawn from the seed in a
    /// simulation, so that equal seeds give byte-equal disks.
    fn new_salt(&self) -> u64;
}

/// An open file.
pub trait StorageFile: Debug + Send {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data, and its length, durable.
    fn sync_data(&mut self) -> io::Result<()>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// Replaces `path` with `contents` atomically: write a tmp file, sync it, rename it over
/// `path`, sync the directory. A crash leaves either the old or the new contents, never a mix.
pub(crate) fn write_atomically(
    storage: &dyn Storage,
    path: &Path,
    contents: &[u8],
) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = crate::fsutil::tmp_path(path);
    match storage.remove(&tmp) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let mut file = storage.create_new(&tmp)?;
    file.write_all_at(contents, 0)?;
    file.sync_data()?;
    drop(file);
    storage.rename(&tmp, path)?;
    storage.sync_dir(dir)
}

/// Writes a file from its start on, as an [`io::Write`].
pub(crate) struct SequentialWriter {
    file: Box<dyn StorageFile>,
    offset: u64,
}

impl SequentialWriter {
    pub(crate) fn new(file: Box<dyn StorageFile>) -> SequentialWriter {
        SequentialWriter { file, offset: 0 }
    }

    /// Makes what was written durable.
    pub(crate) fn sync(mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl io::Write for SequentialWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
