//! A simulated file system that keeps, for every file and directory entry, what a crash would
//! leave of it, and can crash at any operation.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Storage, StorageFile};

/// The unit a torn write tears at: what a disk writes atomically, or not at all.
const PAGE_BYTES: usize = 4096;

/// What a crash does to data written since its file's last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornWrites {
    /// It is lost whole: the file is as of its last sync.
    Lost,
    /// Each page of it is lost or kept at random, and the file ends where it did at its last
    /// sync or where it ends now; a page the file gained and lost reads as zeros (power loss).
    Pages,
}

/// An in-memory file system with POSIX's durability and no more (see the module docs of
/// `storage`). Cloning it gives another handle to the same files.
#[derive(Debug, Clone)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    inodes: Vec<Inode>,
    /// The namespace as it is now.
    current: BTreeMap<PathBuf, usize>,
    /// The namespace as a crash would leave it: as of the last `sync_dir` of each directory.
    durable: BTreeMap<PathBuf, usize>,
    rng: StdRng,
    torn: TornWrites,
    /// Operations so far.
    ops: u64,
    /// Operations from this one on fail, as if the machine had stopped.
    crash_at: Option<u64>,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    data: Vec<u8>,
    /// What a crash leaves at least: the data as of the last sync.
    synced: Vec<u8>,
    /// Changes since the last sync, in order: a sync costs what was written, not the file.
    pending: Vec<Change>,
}

#[derive(Debug, Clone)]
enum Change {
    Write { offset: usize, len: usize },
    SetLen(usize),
}

impl Inode {
    fn sync(&mut self) {
        for change in std::mem::take(&mut self.pending) {
            match change {
                Change::Write { offset, len } => {
                    let end = offset + len;
                    if self.synced.len() < end {
                        self.synced.resize(end, 0);
                    }
                    // The bytes written then may have been overwritten since: the file's
                    // current bytes are what a sync makes durable.
                    let available = self.data.len().min(end);
                    if available > offset {
                        self.synced[offset..available]
                            .copy_from_slice(&self.data[offset..available]);
                    }
                }
                Change::SetLen(len) => self.synced.resize(len, 0),
            }
        }
        self.synced.truncate(self.data.len());
        self.synced.resize(self.data.len(), 0);
    }
}

fn crashed() -> io::Error {
    io::Error::other("the simulated machine crashed")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl State {
    /// Counts an operation, failing it if the machine has crashed.
    fn op(&mut self) -> io::Result<()> {
        let n = self.ops;
        self.ops += 1;
        match self.crash_at {
            Some(at) if n >= at => Err(crashed()),
            _ => Ok(()),
        }
    }

    fn inode(&self, path: &Path) -> io::Result<usize> {
        self.current
            .get(path)
            .copied()
            .ok_or_else(|| not_found(path))
    }
}

impl SimStorage {
    pub fn new(seed: u64, torn: TornWrites) -> SimStorage {
        SimStorage {
            state: Arc::new(Mutex::new(State {
                inodes: Vec::new(),
                current: BTreeMap::new(),
                durable: BTreeMap::new(),
                rng: StdRng::seed_from_u64(seed),
                torn,
                ops: 0,
                crash_at: None,
            })),
        }
    }

    /// Operations so far: a test runs a workload once to count them, then crashes it at each.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Makes operation `at` and every later one fail, as a machine that stopped there.
    pub fn crash_at(&self, at: u64) {
        self.state.lock().crash_at = Some(at);
    }

    /// The machine restarts: the namespace is what was durable, each file what the crash left
    /// of it. Operations work again.
    pub fn restart(&self) {
        let mut state = self.state.lock();
        let State {
            inodes,
            current,
            durable,
            rng,
            torn,
            crash_at,
            ..
        } = &mut *state;
        for inode in inodes.iter_mut() {
            let kept = match torn {
                TornWrites::Lost => inode.synced.clone(),
                TornWrites::Pages => tear(&inode.synced, &inode.data, rng),
            };
            inode.data = kept.clone();
            inode.synced = kept;
            inode.pending.clear();
        }
        *current = durable.clone();
        *crash_at = None;
    }

    /// Flips bits of the byte at `offset` of a file, durably, as bit rot does to data that was
    /// synced long ago. False if there is no such byte.
    pub fn rot(&self, path: &Path, offset: usize) -> bool {
        let mut state = self.state.lock();
        let Some(inode) = state.current.get(path).copied() else {
            return false;
        };
        let inode = &mut state.inodes[inode];
        if offset >= inode.data.len() || offset >= inode.synced.len() {
            return false;
        }
        inode.data[offset] ^= 0x5a;
        inode.synced[offset] ^= 0x5a;
        true
    }

    /// Every file and its contents, for comparing two disks.
    pub fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let state = self.state.lock();
        state
            .current
            .iter()
            .map(|(path, inode)| (path.clone(), state.inodes[*inode].data.clone()))
            .collect()
    }
}

/// What a crash leaves of a file that held `synced` at its last sync and `data` now.
fn tear(synced: &[u8], data: &[u8], rng: &mut StdRng) -> Vec<u8> {
    if synced == data {
        return data.to_vec();
    }
    let len = if rng.gen_bool(0.5) {
        synced.len()
    } else {
        data.len()
    };
    let mut out = vec![0u8; len];
    for start in (0..len).step_by(PAGE_BYTES) {
        let end = (start + PAGE_BYTES).min(len);
        let source = if rng.gen_bool(0.5) { data } else { synced };
        let available = source.len().min(end);
        if available > start {
            out[start..available].copy_from_slice(&source[start..available]);
        }
    }
    out
}

impl Storage for SimStorage {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = self.state.lock();
        state.op()?;
        let inode = state.inode(path)?;
        Ok(state.inodes[inode].data.clone())
    }

    fn open_read(&self, path: &Path) -> io::Result<(Box<dyn io::Read + Send>, u64)> {
        let data = self.read(path)?;
        let len = data.len() as u64;
        Ok((Box::new(io::Cursor::new(data)), len))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut state = self.state.lock();
        state.op()?;
        Ok(state
            .current
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .cloned()
            .collect())
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let mut state = self.state.lock();
        state.op()?;
        if state.current.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        state.inodes.push(Inode::default());
        let inode = state.inodes.len() - 1;
        state.current.insert(path.to_path_buf(), inode);
        Ok(Box::new(SimFile {
            state: self.state.clone(),
            inode,
        }))
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let mut state = self.state.lock();
        state.op()?;
        let inode = state.inode(path)?;
        Ok(Box::new(SimFile {
            state: self.state.clone(),
            inode,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.op()?;
        let inode = state.inode(from)?;
        state.current.remove(from);
        state.current.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.op()?;
        state.inode(path)?;
        state.current.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.op()?;
        let State {
            current, durable, ..
        } = &mut *state;
        durable.retain(|path, _| path.parent() != Some(dir));
        for (path, inode) in current.iter() {
            if path.parent() == Some(dir) {
                durable.insert(path.clone(), *inode);
            }
        }
        Ok(())
    }

    fn new_salt(&self) -> u64 {
        let mut state = self.state.lock();
        loop {
            let salt = state.rng.gen();
            if salt != 0 {
                return salt;
            }
        }
    }
}

#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<State>>,
    inode: usize,
}

impl StorageFile for SimFile {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        state.op()?;
        let data = &mut state.inodes[self.inode].data;
        let offset = usize::try_from(offset).map_err(io::Error::other)?;
        let end = offset + buf.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[offset..end].copy_from_slice(buf);
        state.inodes[self.inode].pending.push(Change::Write {
            offset,
            len: buf.len(),
        });
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut state = self.state.lock();
        state.op()?;
        state.inodes[self.inode].sync();
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        state.op()?;
        let len = usize::try_from(len).map_err(io::Error::other)?;
        let inode = &mut state.inodes[self.inode];
        inode.data.resize(len, 0);
        inode.pending.push(Change::SetLen(len));
        Ok(())
    }
}
