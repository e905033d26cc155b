//! Leftovers of executor processes that did not exit cleanly.
//!
//! An executor killed with SIGKILL (or by the OOM killer) leaves its shuffle
//! files and spills behind. Its successor on the same work directory removes
//! them at start; an executor on a fresh temporary directory removes the
//! temporary directories of earlier executors whose process is gone.
//!
//! A process holds an exclusive lock on `executor.lock` in its work
//! directory for as long as it runs: the kernel releases it when the process
//! dies however it dies, so "lockable" means "abandoned", across PID
//! namespaces and on every platform.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// Locked by the process using a work directory.
const LOCK_FILE: &str = "executor.lock";
/// Prefix of the temporary work directories executors create.
pub(super) const TEMP_DIR_PREFIX: &str = "ballista-executor-";

/// Held for the life of the executor: its claim on the work directory.
#[derive(Debug)]
pub(super) struct WorkDirLock(#[allow(dead_code)] File);

/// Takes `work_dir` for this process: removes what an earlier executor
/// process left in `data_dirs` (executor ids are per process, so the
/// scheduler can reference none of it: it re-ran or forgot that work). When
/// another running executor holds the directory (two executors configured
/// with the same folder), nothing is removed. On a fresh temporary directory
/// (`temporary`), also removes the temporary directories of executor
/// processes that are gone.
pub(super) fn claim(work_dir: &Path, data_dirs: &[&Path], temporary: bool) -> Option<WorkDirLock> {
    let lock = match try_lock(work_dir) {
        Ok(Some(file)) => {
            remove_stale_data(data_dirs);
            Some(WorkDirLock(file))
        }
        Ok(None) => {
            tracing::warn!(
                "work directory {} is in use by another running executor: not removing what earlier executors left there",
                work_dir.display()
            );
            None
        }
        Err(e) => {
            tracing::warn!(
                "cannot lock {}: {e}; not removing what earlier executors left there",
                work_dir.join(LOCK_FILE).display()
            );
            None
        }
    };
    if temporary {
        remove_abandoned_temp_dirs(work_dir);
    }
    lock
}

/// The directory's lock, or `None` when a running process holds it.
fn try_lock(dir: &Path) -> std::io::Result<Option<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Empties `dirs` (each may be missing), saying how much was removed.
fn remove_stale_data(dirs: &[&Path]) {
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let result = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match result {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!("cannot remove stale {}: {e}", path.display()),
            }
        }
        if removed > 0 {
            tracing::info!(
                "removed {removed} stale entr{} left in {} by an earlier executor process",
                if removed == 1 { "y" } else { "ies" },
                dir.display()
            );
        }
    }
}

/// Removes sibling temporary work directories whose lock no process holds.
/// A directory without a lock file (one being created right now) is left
/// alone.
fn remove_abandoned_temp_dirs(own: &Path) {
    let Some(parent) = own.parent() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_executor_dir = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TEMP_DIR_PREFIX));
        if !is_executor_dir || path == own || !path.join(LOCK_FILE).is_file() {
            continue;
        }
        let Ok(Some(lock)) = try_lock(&path) else {
            continue;
        };
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::info!(
                "removed {}, left by an executor process that is gone",
                path.display()
            ),
            Err(e) => tracing::debug!("cannot remove {}: {e}", path.display()),
        }
        drop(lock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_data_is_removed_and_directories_in_use_are_kept() {
        let root = tempfile::tempdir().unwrap();
        let work = root.path().join("work");
        let shuffle = work.join("shuffle");
        std::fs::create_dir_all(shuffle.join("job1/s1")).unwrap();
        std::fs::write(shuffle.join("job1/s1/m0-a0-p0.arrow"), b"x").unwrap();
        // Another running executor holds it: left alone.
        let other = try_lock(&work).unwrap().expect("unlocked");
        assert!(claim(&work, &[&shuffle], false).is_none());
        assert_eq!(std::fs::read_dir(&shuffle).unwrap().count(), 1);
        // Once that process is gone: removed, and claimed.
        drop(other);
        let claimed = claim(&work, &[&shuffle, &work.join("missing")], false);
        assert!(claimed.is_some());
        assert_eq!(std::fs::read_dir(&shuffle).unwrap().count(), 0);

        let own = root.path().join(format!("{TEMP_DIR_PREFIX}own"));
        let dead = root.path().join(format!("{TEMP_DIR_PREFIX}dead"));
        let live = root.path().join(format!("{TEMP_DIR_PREFIX}live"));
        let unmarked = root.path().join(format!("{TEMP_DIR_PREFIX}new"));
        for dir in [&own, &dead, &live, &unmarked] {
            std::fs::create_dir_all(dir).unwrap();
        }
        drop(try_lock(&dead).unwrap());
        let _live = try_lock(&live).unwrap().expect("unlocked");
        let _own = claim(&own, &[], true);
        assert!(!dead.exists());
        assert!(live.exists() && unmarked.exists() && own.exists());
    }
}
