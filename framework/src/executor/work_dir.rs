//! Leftovers of executor processes that did not exit cleanly.
//!
//! An executor killed with SIGKILL (or by the OOM killer) leaves its shuffle
//! files and spills behind. Its successor on the same work directory removes
//! them at start; an executor on a fresh temporary directory removes the
//! temporary directories of earlier executors whose process is gone.

use std::path::Path;

/// Marks a work directory with the process that uses it.
const PID_FILE: &str = "executor.pid";
/// Prefix of the temporary work directories executors create.
pub(super) const TEMP_DIR_PREFIX: &str = "ballista-executor-";

/// Takes `work_dir` for this process: removes what an earlier executor
/// process left in `data_dirs` (executor ids are per process, so the
/// scheduler can reference none of it: it re-ran or forgot that work), and
/// records this process. When another live process claimed the directory
/// (two executors configured with the same folder), nothing is removed. On
/// a fresh temporary directory (`temporary`), also removes the temporary
/// directories of executor processes that are gone.
pub(super) fn claim(work_dir: &Path, data_dirs: &[&Path], temporary: bool) {
    match owner(work_dir) {
        Some(pid) if pid != std::process::id() && is_alive(pid) => tracing::warn!(
            "work directory {} is also used by process {pid}: not removing what earlier executors left there",
            work_dir.display()
        ),
        _ => remove_stale_data(data_dirs),
    }
    if temporary {
        remove_abandoned_temp_dirs(work_dir);
    }
    write_pid_file(work_dir);
}

/// The process recorded in a work directory, if any.
fn owner(work_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(work_dir.join(PID_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Whether a process runs; `true` where that cannot be checked (not Linux).
fn is_alive(pid: u32) -> bool {
    !Path::new("/proc/self").exists() || Path::new(&format!("/proc/{pid}")).exists()
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

/// Records this process in its work directory.
fn write_pid_file(work_dir: &Path) {
    if let Err(e) = std::fs::write(work_dir.join(PID_FILE), std::process::id().to_string()) {
        tracing::warn!("cannot write {}: {e}", work_dir.join(PID_FILE).display());
    }
}

/// Removes sibling temporary work directories whose executor process no
/// longer runs. A directory without a pid file (one being created right
/// now) is left alone. Only where process liveness can be checked (Linux).
fn remove_abandoned_temp_dirs(own: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
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
        if !is_executor_dir || path == own {
            continue;
        }
        let Some(pid) = owner(&path) else {
            continue;
        };
        if is_alive(pid) {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::info!(
                "removed {}, left by executor process {pid} which is gone",
                path.display()
            ),
            Err(e) => tracing::debug!("cannot remove {}: {e}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_data_is_removed_and_live_or_unmarked_dirs_are_kept() {
        let root = tempfile::tempdir().unwrap();
        let shuffle = root.path().join("shuffle");
        std::fs::create_dir_all(shuffle.join("job1/s1")).unwrap();
        std::fs::write(shuffle.join("job1/s1/m0-a0-p0.arrow"), b"x").unwrap();
        // Claimed by a live process other than this one: left alone.
        std::fs::write(root.path().join(PID_FILE), "1").unwrap();
        claim(root.path(), &[&shuffle], false);
        assert_eq!(std::fs::read_dir(&shuffle).unwrap().count(), 1);
        // Left by a process that is gone (or by this one): removed.
        claim(
            root.path(),
            &[&shuffle, &root.path().join("missing")],
            false,
        );
        assert_eq!(std::fs::read_dir(&shuffle).unwrap().count(), 0);
        assert_eq!(owner(root.path()), Some(std::process::id()));

        let own = root.path().join(format!("{TEMP_DIR_PREFIX}own"));
        let dead = root.path().join(format!("{TEMP_DIR_PREFIX}dead"));
        let live = root.path().join(format!("{TEMP_DIR_PREFIX}live"));
        let unmarked = root.path().join(format!("{TEMP_DIR_PREFIX}new"));
        for dir in [&own, &dead, &live, &unmarked] {
            std::fs::create_dir_all(dir).unwrap();
        }
        // No process has pid u32::MAX - 1; this test's process is alive.
        std::fs::write(dead.join(PID_FILE), (u32::MAX - 1).to_string()).unwrap();
        write_pid_file(&live);
        remove_abandoned_temp_dirs(&own);
        assert!(!dead.exists());
        assert!(live.exists() && unmarked.exists() && own.exists());
    }
}
