//! How many heaps (arenas) glibc's allocator keeps in an executor process.
//!
//! glibc gives a thread that finds the heap it used locked by another thread
//! a heap of its own, up to eight per core, and memory freed into one heap is
//! reused only by the threads of that heap. An executor's task, Flight and
//! control threads take turns allocating and freeing the same large batches,
//! so each heap ends up holding the high-water mark of the work that passed
//! through it: memory the executor has freed, and its budget no longer
//! counts, stays resident. At TPC-H scale factor 1 on a 256 MiB budget (and
//! the 5% shuffle tier), one heap in each of two executors of one slot took
//! their peak resident sizes from 117% and 114% of the budget to 104% and
//! 106%, with the same query times (README, Memory).

/// Limits glibc's allocator to `arenas` heaps (at least one) for the rest of
/// the process, unless the environment already chose (`MALLOC_ARENA_MAX`,
/// which glibc reads itself). Returns the limit set, or `None` when it left
/// the choice to the environment or the process does not use glibc.
///
/// Call it before the process starts its tokio runtime (from a plain `fn
/// main` that then builds the runtime, not from `#[tokio::main]`, whose
/// threads exist before its body runs): a thread that has already allocated
/// keeps the heap it was given. One heap
/// per task slot suits an executor: its tasks are what allocate most, and
/// they run one per slot. The embedded cluster does not call it, since the
/// setting would also apply to the program that embeds it.
pub fn limit_malloc_arenas(arenas: usize) -> Option<usize> {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return None;
    }
    set_arena_max(arenas.max(1))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max(arenas: usize) -> Option<usize> {
    let value = libc::c_int::try_from(arenas).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only changes a tuning parameter of the allocator; it
    // returns 0 when the parameter or value is refused.
    let accepted = unsafe { libc::mallopt(libc::M_ARENA_MAX, value) };
    (accepted != 0).then_some(arenas)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: usize) -> Option<usize> {
    None
}
