//! Small durable-file helpers shared by the log, the snapshot store and the epoch files.

use std::fs::{self, File};
use std::io::{self};
use std::path::Path;

/// Fsyncs a directory so that file creations, renames and deletions in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing ancestors, fsyncing the parent of each directory it created
/// so that the new entries survive a crash (files then made durable inside `dir` would
/// otherwise be lost with it).
pub(crate) fn create_dir_all_durably(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut ancestor = Some(dir);
    while let Some(path) = ancestor {
        if path.as_os_str().is_empty() || path.is_dir() {
            break;
        }
        missing.push(path);
        ancestor = path.parent();
    }
    fs::create_dir_all(dir)?;
    // Deepest first: each parent's entry for the child it gained.
    for created in missing {
        let parent = created
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        sync_dir(parent)?;
    }
    Ok(())
}

/// The tmp name used while a file is written; `*.tmp` files are leftovers of a crash.
pub(crate) fn tmp_path(path: &Path) -> std::path::PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_dir_all_durably_creates_nested_dirs_and_accepts_existing_ones() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a").join("b");
        create_dir_all_durably(&dir).unwrap();
        assert!(dir.is_dir());
        create_dir_all_durably(&dir).unwrap();
        assert!(dir.is_dir());
    }
}
