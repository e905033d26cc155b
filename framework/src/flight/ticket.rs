//! Flight tickets name a file relative to an executor's work directory; this
//! module is the only place that turns one into a path, and it refuses any
//! ticket that could reach outside that directory.

use std::path::{Component, Path, PathBuf};

use arrow_flight::Ticket;
use prost::Message;

use crate::error::{BallistaError, Result};
use crate::ids::JobId;
use crate::proto::FetchPartitionTicket;

/// Encodes a ticket for a partition file.
pub fn encode_ticket(job_id: &JobId, path: &str) -> Ticket {
    let ticket = FetchPartitionTicket {
        job_id: job_id.to_string(),
        path: path.to_string(),
    };
    Ticket::new(ticket.encode_to_vec())
}

/// Decodes a ticket received by the Flight service.
pub fn decode_ticket(bytes: &[u8]) -> Result<FetchPartitionTicket> {
    FetchPartitionTicket::decode(bytes)
        .map_err(|e| BallistaError::InvalidInput(format!("malformed Flight ticket: {e}")))
}

/// The file a ticket names, inside `work_dir` (which must be canonical).
///
/// Refused: an invalid job id, an absolute path, any `..`, root or hidden
/// component, a path not under the ticket's job directory, and a path that
/// leaves the work directory through a symbolic link.
pub fn resolve_ticket_path(work_dir: &Path, ticket: &FetchPartitionTicket) -> Result<PathBuf> {
    let job_id = JobId::parse(&ticket.job_id)?;
    let requested = Path::new(&ticket.path);
    if ticket.path.is_empty() || requested.is_absolute() || requested.has_root() {
        return Err(BallistaError::PermissionDenied(format!(
            "ticket path \"{}\" must be relative to the executor's work directory",
            crate::util::loggable(&ticket.path)
        )));
    }
    let mut components = requested.components();
    for component in requested.components() {
        let plain = match component {
            // Hidden names are temporary files of uncommitted attempts.
            Component::Normal(name) => !name.to_string_lossy().starts_with('.'),
            _ => false,
        };
        if !plain {
            return Err(BallistaError::PermissionDenied(format!(
                "ticket path \"{}\" may only contain plain names (no '..', no hidden files)",
                crate::util::loggable(&ticket.path)
            )));
        }
    }
    if components.next() != Some(Component::Normal(job_id.as_str().as_ref())) {
        return Err(BallistaError::PermissionDenied(format!(
            "ticket path \"{}\" is not inside the directory of job {job_id}",
            crate::util::loggable(&ticket.path)
        )));
    }
    let full = work_dir.join(requested);
    let canonical = full.canonicalize().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            BallistaError::NotFound(format!(
                "shuffle file \"{}\" does not exist on this executor",
                crate::util::loggable(&ticket.path)
            ))
        } else {
            BallistaError::Io(format!(
                "cannot open \"{}\": {e}",
                crate::util::loggable(&ticket.path)
            ))
        }
    })?;
    if !canonical.starts_with(work_dir) {
        return Err(BallistaError::PermissionDenied(format!(
            "ticket path \"{}\" resolves outside the executor's work directory",
            crate::util::loggable(&ticket.path)
        )));
    }
    if !canonical.is_file() {
        return Err(BallistaError::PermissionDenied(format!(
            "ticket path \"{}\" is not a shuffle file",
            crate::util::loggable(&ticket.path)
        )));
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(job: &str, path: &str) -> FetchPartitionTicket {
        FetchPartitionTicket {
            job_id: job.into(),
            path: path.into(),
        }
    }

    #[test]
    fn escapes_are_refused_and_real_files_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(work.join("job1/s1")).unwrap();
        std::fs::write(work.join("job1/s1/a.arrow"), b"x").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.path(), work.join("job1/link")).unwrap();

        let ok = resolve_ticket_path(&work, &ticket("job1", "job1/s1/a.arrow")).unwrap();
        assert_eq!(ok, work.join("job1/s1/a.arrow"));

        for (job, path) in [
            ("job1", "job1/../../etc/passwd"),
            ("job1", "../etc/passwd"),
            ("job1", "/etc/passwd"),
            ("job1", "job2/s1/a.arrow"),
            ("job1", "job1/link/secret"),
            ("job1", "job1/s1/.m0-a0-p0.arrow.tmp"),
            ("job1", ""),
            ("job1", "job1/s1"),
        ] {
            let err = resolve_ticket_path(&work, &ticket(job, path)).unwrap_err();
            assert!(
                matches!(err, BallistaError::PermissionDenied(_)),
                "{path:?} gave {err:?}"
            );
        }
        let err = resolve_ticket_path(&work, &ticket("..", "../x")).unwrap_err();
        assert!(matches!(err, BallistaError::InvalidInput(_)), "{err:?}");
        let err = resolve_ticket_path(&work, &ticket("job1", "job1/s1/missing")).unwrap_err();
        assert!(matches!(err, BallistaError::NotFound(_)), "{err:?}");
    }
}
