//! Answers the scheduler computes itself, for statements that read only
//! its catalog (`SHOW TABLES`, `SHOW COLUMNS`, `information_schema`): the
//! catalog lives in the scheduler, so these never become jobs. Their rows
//! are held here for the client that asked, until read or expired.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parking_lot::Mutex;

use crate::error::{BallistaError, Result};
use crate::plugin::auth::Identity;

/// Most bytes of such answers held at once.
const MAX_HELD_BYTES: usize = 64 << 20;

/// How long an answer waits to be read.
const KEPT_FOR: Duration = Duration::from_secs(600);

/// Prefix of the statement handles of these answers.
pub(crate) const HANDLE_PREFIX: &str = "catalog/";

struct Held {
    owner: String,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    bytes: usize,
    until: Instant,
}

/// The answers held.
#[derive(Default)]
pub(crate) struct LocalResults {
    held: Mutex<HashMap<String, Held>>,
}

impl LocalResults {
    /// Holds `batches` for `owner`; the handle to read them with.
    pub(crate) fn hold(
        &self,
        owner: &Identity,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<String> {
        let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        let mut held = self.held.lock();
        let now = Instant::now();
        held.retain(|_, h| h.until > now);
        let total: usize = held.values().map(|h| h.bytes).sum();
        if total + bytes > MAX_HELD_BYTES {
            return Err(BallistaError::ResourcesExhausted(format!(
                "the scheduler holds {total} bytes of catalog answers not yet read; this one \
                 ({bytes} bytes) does not fit under {MAX_HELD_BYTES}"
            )));
        }
        let handle = format!("{HANDLE_PREFIX}{}", uuid::Uuid::new_v4().simple());
        held.insert(
            handle.clone(),
            Held {
                owner: owner.user.clone(),
                schema,
                batches,
                bytes,
                until: now + KEPT_FOR,
            },
        );
        Ok(handle)
    }

    /// The rows held under `handle`, for the user they were computed for;
    /// read once.
    pub(crate) fn take(
        &self,
        caller: &Identity,
        handle: &str,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let mut held = self.held.lock();
        match held.get(handle) {
            Some(h) if h.owner == caller.user && h.until > Instant::now() => {
                let h = held.remove(handle).expect("present");
                Ok((h.schema, h.batches))
            }
            _ => Err(BallistaError::NotFound(
                "no such catalog answer: it was read already, expired, or is another user's".into(),
            )),
        }
    }
}
