//! Flight tickets name a file relative to an executor's work directory; this
//! module is the only place that turns one into a path, and it refuses any
//! ticket that could reach outside that directory.
//!
//! A ticket is a capability the scheduler signs when a map task commits:
//! job, path, executor and expiry, signed with that executor's session key
//! ([`sign_ticket`]). The executor serves a ticket only when the signature
//! holds, the ticket is for it, and it has not expired ([`verify_ticket`]):
//! knowing a job id and guessing a path opens nothing.

use std::path::{Component, Path, PathBuf};

use arrow_flight::Ticket;
use prost::Message;

use crate::auth::SecretKey;
use crate::auth::crypto::now_secs;
use crate::error::{BallistaError, Result};
use crate::ids::JobId;
use crate::proto::FetchPartitionTicket;

/// Encodes an unsigned ticket for a partition file: executors refuse it
/// (see [`sign_ticket`]); for tests of that refusal.
pub fn encode_ticket(job_id: &JobId, path: &str) -> Ticket {
    let ticket = FetchPartitionTicket {
        job_id: job_id.to_string(),
        path: path.to_string(),
        ..Default::default()
    };
    Ticket::new(ticket.encode_to_vec())
}

fn signed_parts<'a>(ticket: &'a FetchPartitionTicket, expires: &'a [u8; 8]) -> [&'a [u8]; 5] {
    [
        b"ballista flight ticket v1",
        ticket.job_id.as_bytes(),
        ticket.path.as_bytes(),
        ticket.executor_id.as_bytes(),
        expires,
    ]
}

/// A ticket for `path` of `job_id` on executor `executor_id`, valid
/// `ttl_secs`, signed with that executor's session key `key`.
pub fn sign_ticket(
    key: &SecretKey,
    job_id: &JobId,
    path: &str,
    executor_id: &str,
    ttl_secs: u64,
) -> Vec<u8> {
    let mut ticket = FetchPartitionTicket {
        job_id: job_id.to_string(),
        path: path.to_string(),
        executor_id: executor_id.to_string(),
        expires_at_secs: now_secs().saturating_add(ttl_secs),
        signature: Vec::new(),
    };
    let expires = ticket.expires_at_secs.to_be_bytes();
    let signature = key.sign(&signed_parts(&ticket, &expires));
    ticket.signature = signature.to_vec();
    ticket.encode_to_vec()
}

/// Whether `ticket` opens anything on executor `own_id`, whose session key
/// is `key` (`None` before it has registered): signed by the scheduler with
/// that key, for this executor, not expired.
pub fn verify_ticket(
    key: Option<&SecretKey>,
    own_id: &str,
    ticket: &FetchPartitionTicket,
) -> Result<()> {
    if ticket.signature.is_empty() {
        return Err(BallistaError::PermissionDenied(
            "the Flight ticket is not signed by the scheduler: a job id and a path grant nothing; \
             use the ticket the job's status gives"
                .into(),
        ));
    }
    if ticket.executor_id != own_id {
        return Err(BallistaError::PermissionDenied(format!(
            "the Flight ticket is for executor {}, not for this one ({own_id})",
            crate::util::loggable(&ticket.executor_id)
        )));
    }
    let key = key.ok_or_else(|| {
        BallistaError::Unavailable("this executor has not registered with its scheduler yet".into())
    })?;
    let expires = ticket.expires_at_secs.to_be_bytes();
    if !key.verify(&signed_parts(ticket, &expires), &ticket.signature) {
        return Err(BallistaError::PermissionDenied(
            "the Flight ticket's signature does not match its job, path and executor (altered, \
             or signed for an earlier registration of this executor)"
                .into(),
        ));
    }
    let now = now_secs();
    if ticket.expires_at_secs <= now {
        return Err(BallistaError::PermissionDenied(format!(
            "the Flight ticket expired {} s ago (scheduler.ticket_ttl_secs)",
            now - ticket.expires_at_secs
        )));
    }
    Ok(())
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
            ..Default::default()
        }
    }

    #[test]
    fn signed_tickets_open_their_partition_on_their_executor_only() {
        let key = SecretKey::random().unwrap();
        let job = JobId::parse("job1").unwrap();
        let bytes = sign_ticket(&key, &job, "job1/s1/p0.arrow", "e1", 60);
        let signed = decode_ticket(&bytes).unwrap();
        verify_ticket(Some(&key), "e1", &signed).unwrap();
        let refused =
            |ticket: &FetchPartitionTicket, key: &SecretKey, own: &str| match verify_ticket(
                Some(key),
                own,
                ticket,
            ) {
                Err(BallistaError::PermissionDenied(m)) => m,
                other => panic!("expected a refusal, got {other:?}"),
            };
        let other_partition = FetchPartitionTicket {
            path: "job1/s1/p1.arrow".into(),
            ..signed.clone()
        };
        assert!(refused(&other_partition, &key, "e1").contains("signature does not match"));
        let later = FetchPartitionTicket {
            expires_at_secs: signed.expires_at_secs + 3600,
            ..signed.clone()
        };
        assert!(refused(&later, &key, "e1").contains("signature does not match"));
        assert!(refused(&signed, &key, "e2").contains("for executor e1"));
        let other_key = SecretKey::random().unwrap();
        assert!(refused(&signed, &other_key, "e1").contains("signature does not match"));
        assert!(refused(&ticket("job1", "job1/s1/p0.arrow"), &key, "e1").contains("not signed"));
        let expired = decode_ticket(&sign_ticket(&key, &job, "job1/s1/p0.arrow", "e1", 0)).unwrap();
        assert!(refused(&expired, &key, "e1").contains("expired"));
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
