//! The persisted Zab epochs: `acceptedEpoch` and `currentEpoch` files in the data dir.
//!
//! As in ZooKeeper, each holds the epoch as decimal text. `acceptedEpoch` is the last epoch this
//! server agreed to (Discovery); `currentEpoch` the last one it joined as up to date (after
//! NEWLEADER). A missing file means epoch 0.

use std::io;
use std::path::{Path, PathBuf};

use crate::storage::{write_atomically, Storage};
use crate::Epoch;

pub(crate) const ACCEPTED_EPOCH_FILE: &str = "acceptedEpoch";
pub(crate) const CURRENT_EPOCH_FILE: &str = "currentEpoch";

/// Why an epoch file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EpochError {
    #[error("epoch file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("epoch file {} holds {content:?}, not an epoch number", path.display())]
    Malformed { path: PathBuf, content: String },
}

/// Reads an epoch file; `Epoch(0)` if it does not exist.
pub(crate) fn read(storage: &dyn Storage, dir: &Path, name: &str) -> Result<Epoch, EpochError> {
    let path = dir.join(name);
    let content = match storage.read(&path) {
        Ok(content) => String::from_utf8_lossy(&content).into_owned(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Epoch(0)),
        Err(source) => return Err(EpochError::Io { path, source }),
    };
    match content.trim().parse::<u32>() {
        Ok(epoch) => Ok(Epoch(epoch)),
        Err(_) => Err(EpochError::Malformed { path, content }),
    }
}

/// Durably replaces an epoch file.
pub(crate) fn write(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    epoch: Epoch,
) -> Result<(), EpochError> {
    let path = dir.join(name);
    write_atomically(storage, &path, format!("{}\n", epoch.0).as_bytes())
        .map_err(|source| EpochError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    use crate::storage::OsStorage;

    #[test]
    fn epoch_files_round_trip_and_default_to_zero() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read(&OsStorage, dir.path(), CURRENT_EPOCH_FILE).unwrap(),
            Epoch(0)
        );
        write(&OsStorage, dir.path(), CURRENT_EPOCH_FILE, Epoch(7)).unwrap();
        assert_eq!(
            read(&OsStorage, dir.path(), CURRENT_EPOCH_FILE).unwrap(),
            Epoch(7)
        );
        assert_eq!(
            fs::read_to_string(dir.path().join(CURRENT_EPOCH_FILE)).unwrap(),
            "7\n"
        );
    }

    #[test]
    fn malformed_epoch_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(ACCEPTED_EPOCH_FILE), "seven").unwrap();
        let err = read(&OsStorage, dir.path(), ACCEPTED_EPOCH_FILE).unwrap_err();
        assert!(err.to_string().contains("acceptedEpoch"), "{err}");
    }
}
