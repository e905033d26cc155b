//! The machinery of the fuzz tests (`fuzz_decoders.rs`, `fuzz_shuffle_data.rs`):
//! a seeded PRNG and the mutations it drives, a counting global allocator, a
//! panic counter, and the report of what each decoder made of its inputs.
//!
//! Each fuzz test binary includes this module; not every binary uses every
//! item, hence the `dead_code` allowance.

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::any::Any;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};
use std::time::Instant;

use ballista::BallistaError;

mod mutation;

pub use mutation::{Mutator, Origin};

/// Inputs each network decoder gets (one gRPC call each).
pub const INPUTS_PER_DECODER: usize = 1000;
/// In-process decoders are cheaper: they get this many times as many.
pub const IN_PROCESS_FACTOR: usize = 10;
/// Overrides [`INPUTS_PER_DECODER`] (a longer campaign).
pub const INPUTS_ENV: &str = "BALLISTA_FUZZ_INPUTS";
/// Overrides the base seed of the PRNG (a different campaign).
pub const SEED_ENV: &str = "BALLISTA_FUZZ_SEED";
const DEFAULT_SEED: u64 = 0xBA11_157A_F022_5EED;

/// Most bytes the process may hold at once during a campaign.
pub const PEAK_BYTES_LIMIT: usize = 1 << 30;
/// Largest single allocation a campaign may request.
pub const SINGLE_ALLOCATION_LIMIT: usize = 512 << 20;
/// Single requests above this are refused outright (the requester then
/// aborts with "memory allocation of N bytes failed") so that a runaway
/// decoder cannot take the machine's memory before the test can report it.
pub const REFUSED_ALLOCATION_BYTES: usize = 4 << 30;

/// Inputs per network decoder: [`INPUTS_PER_DECODER`] or `BALLISTA_FUZZ_INPUTS`.
pub fn network_inputs() -> usize {
    env_number(INPUTS_ENV).map_or(INPUTS_PER_DECODER, |n| n as usize)
}

/// Inputs per in-process decoder.
pub fn in_process_inputs() -> usize {
    network_inputs().saturating_mul(IN_PROCESS_FACTOR)
}

/// The campaign's base seed: fixed, or `BALLISTA_FUZZ_SEED`.
pub fn base_seed() -> u64 {
    env_number(SEED_ENV).unwrap_or(DEFAULT_SEED)
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let number = value
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name}={value:?} is not a whole number"));
    Some(number)
}

// Memory
// ---------------------------------------------------------------------------

/// The system allocator, counting the bytes held now, the most held at once
/// and the largest single request.
pub struct CountingAllocator;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

static HELD_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);
static LARGEST_REQUEST: AtomicUsize = AtomicUsize::new(0);

fn admit(size: usize) -> bool {
    let before = LARGEST_REQUEST.fetch_max(size, Ordering::Relaxed);
    if size > SINGLE_ALLOCATION_LIMIT && size > before {
        note_oversized_site(size);
    }
    size <= REFUSED_ALLOCATION_BYTES
}

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
}

/// Where the largest oversized allocation was asked for, to name the
/// culprit in the report.
static OVERSIZED_SITE: Mutex<Option<String>> = Mutex::new(None);

fn note_oversized_site(size: usize) {
    // Capturing a backtrace allocates: not from inside a capture.
    if CAPTURING.try_with(|c| c.replace(true)).unwrap_or(true) {
        return;
    }
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    let frames: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("at ") && !l.contains("/rustc/") && !l.contains("fuzz_support"))
        .take(12)
        .collect();
    *OVERSIZED_SITE
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(format!(
        "{} bytes requested at:\n{}",
        size,
        frames.join("\n")
    ));
    let _ = CAPTURING.try_with(|c| c.set(false));
}

fn grew(bytes: usize) {
    let held = HELD_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK_BYTES.fetch_max(held, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    HELD_BYTES.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` with the caller's arguments;
// the counters are only bookkeeping.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded as received.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded as received.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !admit(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded as received.
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        moved
    }
}

/// What the allocator saw since the last [`reset_memory_marks`].
#[derive(Debug, Clone, Copy)]
pub struct MemoryMarks {
    pub held_bytes: usize,
    pub peak_bytes: usize,
    pub largest_request: usize,
}

pub fn memory_marks() -> MemoryMarks {
    MemoryMarks {
        held_bytes: HELD_BYTES.load(Ordering::Relaxed),
        peak_bytes: PEAK_BYTES.load(Ordering::Relaxed),
        largest_request: LARGEST_REQUEST.load(Ordering::Relaxed),
    }
}

fn reset_memory_marks() {
    PEAK_BYTES.store(HELD_BYTES.load(Ordering::Relaxed), Ordering::Relaxed);
    LARGEST_REQUEST.store(0, Ordering::Relaxed);
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

// ---------------------------------------------------------------------------
// Panics
// ---------------------------------------------------------------------------

/// Panics anywhere in the process: the scheduler and executor run in this
/// process, where tonic and tokio catch a handler's panic and carry on, so
/// counting them is the only way to see one.
static PANICS: AtomicUsize = AtomicUsize::new(0);
/// Panics inside `ballista::util::decode_guarded`, which turns them into
/// `InvalidInput` errors: counted and reported, not findings.
static CONTAINED_PANICS: AtomicUsize = AtomicUsize::new(0);
/// Panics by site and message.
static PANIC_SITES: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());
/// Panics of decoders printed in full (all are counted); the test's own
/// assertions are always printed.
const PANICS_PRINTED: usize = 5;

thread_local! {
    /// Set on the thread that runs a test's assertions.
    static DRIVER_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn install_panic_counter() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let print = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if ballista::util::inside_guarded_decoder() {
                CONTAINED_PANICS.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let seen = PANICS.fetch_add(1, Ordering::SeqCst);
            let site = info.location().map_or_else(
                || "unknown location".to_string(),
                |l| format!("{}:{}", l.file(), l.line()),
            );
            let key = format!("{site}: {}", panic_text(info.payload()));
            *PANIC_SITES
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key)
                .or_default() += 1;
            let on_driver = DRIVER_THREAD.try_with(Cell::get).unwrap_or(false);
            if on_driver || seen < PANICS_PRINTED {
                print(info);
            }
        }));
    });
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)");
    text.chars().take(160).collect()
}

pub fn panics_so_far() -> usize {
    PANICS.load(Ordering::SeqCst)
}

/// Panics turned into errors by the framework's guarded decoders so far.
pub fn contained_panics_so_far() -> usize {
    CONTAINED_PANICS.load(Ordering::SeqCst)
}

/// The most frequent panic sites, one a line.
fn panic_sites() -> String {
    let sites = PANIC_SITES.lock().unwrap_or_else(PoisonError::into_inner);
    let mut by_count: Vec<(&String, &usize)> = sites.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1));
    by_count
        .iter()
        .take(20)
        .map(|(site, count)| format!("  {count:>6} x {site}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------

/// What one decoder made of its inputs.
pub struct Tally {
    decoder: String,
    inputs: usize,
    decoded: usize,
    accepted: usize,
    outcomes: BTreeMap<String, usize>,
    panics_at_start: usize,
    panics: usize,
}

impl Tally {
    /// Starts counting `decoder`'s inputs.
    pub fn new(decoder: impl Into<String>) -> Self {
        let decoder = decoder.into();
        announce(&decoder);
        Self {
            decoder,
            inputs: 0,
            decoded: 0,
            accepted: 0,
            outcomes: BTreeMap::new(),
            panics_at_start: panics_so_far(),
            panics: 0,
        }
    }

    pub fn decoder(&self) -> &str {
        &self.decoder
    }

    /// One input: whether it parses as the message the decoder expects,
    /// what the decoder answered (a gRPC code or an error kind) and whether
    /// it took the input.
    pub fn count(&mut self, decoded: bool, outcome: &str, accepted: bool) {
        self.inputs += 1;
        self.decoded += usize::from(decoded);
        self.accepted += usize::from(accepted);
        *self.outcomes.entry(outcome.to_string()).or_default() += 1;
    }

    fn line(&self) -> String {
        let outcomes = self
            .outcomes
            .iter()
            .map(|(outcome, n)| format!("{outcome} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{:<52} {:>6} inputs {:>6} decoded {:>6} accepted {:>4} panics | {outcomes}",
            self.decoder, self.inputs, self.decoded, self.accepted, self.panics
        )
    }
}

/// Says which decoder runs, straight to the process's stderr (past the test
/// harness's capture): when a decoder stops the process (an allocation that
/// cannot be served aborts it), the last such line names the culprit.
fn announce(decoder: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "fuzzing {decoder}");
}

/// Findings kept in full; the rest are counted.
const FAILURES_KEPT: usize = 40;

/// Fuzz tests run one at a time: the allocator's marks and the panic count
/// are process-wide.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// One test's fuzzing: the decoders' tallies and what went wrong. The
/// assertions run in [`finish`](Self::finish), after every decoder has had
/// its inputs, so that one report names every finding.
pub struct Campaign {
    title: &'static str,
    started: Instant,
    panics_at_start: usize,
    tallies: Vec<Tally>,
    failures: Vec<String>,
    failures_not_kept: usize,
    _exclusive: MutexGuard<'static, ()>,
}

impl Campaign {
    pub fn start(title: &'static str) -> Self {
        let exclusive = EXCLUSIVE.lock().unwrap_or_else(PoisonError::into_inner);
        install_panic_counter();
        DRIVER_THREAD.with(|driver| driver.set(true));
        PANIC_SITES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        reset_memory_marks();
        println!(
            "{title}: seed {:#x}, {} inputs per network decoder, {} per in-process decoder \
             (set {INPUTS_ENV} and {SEED_ENV} for another campaign)",
            base_seed(),
            network_inputs(),
            in_process_inputs()
        );
        Self {
            title,
            started: Instant::now(),
            panics_at_start: panics_so_far(),
            tallies: Vec::new(),
            failures: Vec::new(),
            failures_not_kept: 0,
            _exclusive: exclusive,
        }
    }

    /// Adds a decoder's tally (printed at once) and the panics during its run.
    pub fn record(&mut self, mut tally: Tally) {
        tally.panics = panics_so_far() - tally.panics_at_start;
        println!("{}", tally.line());
        if tally.panics > 0 {
            self.fail(format!(
                "{}: {} panic(s) while decoding its inputs",
                tally.decoder, tally.panics
            ));
        }
        self.tallies.push(tally);
    }

    pub fn fail(&mut self, failure: impl Into<String>) {
        if self.failures.len() < FAILURES_KEPT {
            self.failures.push(failure.into());
        } else {
            self.failures_not_kept += 1;
        }
    }

    /// Prints the report and asserts: no finding, no panic, memory bounded.
    pub fn finish(self) {
        let memory = memory_marks();
        let panics = panics_so_far() - self.panics_at_start;
        println!(
            "{}: {} decoder(s) in {:.1}s; {} panic(s) inside third-party decoders refused as \
             InvalidInput; peak {} held ({} now), largest allocation {}",
            self.title,
            self.tallies.len(),
            self.started.elapsed().as_secs_f64(),
            contained_panics_so_far(),
            mib(memory.peak_bytes),
            mib(memory.held_bytes),
            mib(memory.largest_request)
        );
        for tally in &self.tallies {
            println!("{}", tally.line());
        }
        let mut problems = self.failures;
        if self.failures_not_kept > 0 {
            problems.push(format!("... and {} more", self.failures_not_kept));
        }
        if panics > 0 {
            problems.push(format!(
                "{panics} panic(s) in the process; by site:\n{}",
                panic_sites()
            ));
        }
        if memory.peak_bytes > PEAK_BYTES_LIMIT {
            problems.push(format!(
                "the process held {} at its peak, over the {} bound",
                mib(memory.peak_bytes),
                mib(PEAK_BYTES_LIMIT)
            ));
        }
        if memory.largest_request > SINGLE_ALLOCATION_LIMIT {
            let site = OVERSIZED_SITE
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_default();
            problems.push(format!(
                "a single allocation of {} was requested, over the {} bound; {site}",
                mib(memory.largest_request),
                mib(SINGLE_ALLOCATION_LIMIT)
            ));
        }
        assert!(
            problems.is_empty(),
            "{}: {} finding(s):\n{}",
            self.title,
            problems.len(),
            problems.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// In-process decoders
// ---------------------------------------------------------------------------

/// The runtime a fuzz test drives its decoders (and its cluster) on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Whether `bytes` parse as the protobuf message `M`.
pub fn parses_as<M: prost::Message + Default>(bytes: &[u8]) -> bool {
    M::decode(bytes).is_ok()
}

/// A valid input of an in-process decoder, and whether the decoder must
/// take it as it is.
#[derive(Debug, Clone)]
pub struct DecoderSeed {
    pub bytes: Vec<u8>,
    pub accepted: bool,
}

impl DecoderSeed {
    pub fn valid(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            accepted: true,
        }
    }

    pub fn invalid(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            accepted: false,
        }
    }
}

/// What an in-process decoder made of one input.
#[derive(Debug)]
pub struct Verdict {
    /// "Ok", the error kind, or "panic".
    pub outcome: String,
    pub accepted: bool,
    /// An invariant the decoder's answer broke.
    pub violation: Option<String>,
}

impl Verdict {
    pub fn accepted() -> Self {
        Self {
            outcome: "Ok".into(),
            accepted: true,
            violation: None,
        }
    }

    pub fn refused(error: &BallistaError) -> Self {
        Self {
            outcome: format!("{:?}", error.kind()),
            accepted: false,
            violation: None,
        }
    }

    pub fn violated(what: String) -> Self {
        Self {
            outcome: "violation".into(),
            accepted: true,
            violation: Some(what),
        }
    }

    pub fn of<T>(result: Result<T, BallistaError>) -> Self {
        match result {
            Ok(_) => Self::accepted(),
            Err(error) => Self::refused(&error),
        }
    }

    fn unfinished(outcome: &str) -> Self {
        Self {
            outcome: outcome.into(),
            accepted: false,
            violation: None,
        }
    }
}

/// Runs `decode` on every input of `decoder` (its seeds, then mutations),
/// each in a task of its own as the services run theirs, so that a panic is
/// counted and the run goes on.
pub async fn fuzz_in_process<F, Fut>(
    campaign: &mut Campaign,
    decoder: &str,
    seeds: Vec<DecoderSeed>,
    parses: fn(&[u8]) -> bool,
    decode: F,
) where
    F: Fn(Vec<u8>) -> Fut,
    Fut: Future<Output = Verdict> + Send + 'static,
{
    let mut tally = Tally::new(decoder);
    let expected: Vec<bool> = seeds.iter().map(|seed| seed.accepted).collect();
    let mut inputs = Mutator::new(decoder, seeds.into_iter().map(|seed| seed.bytes).collect());
    for index in 0..in_process_inputs().max(expected.len()) {
        let input = inputs.input(index);
        let parsed = parses(&input.bytes);
        let verdict = match tokio::spawn(decode(input.bytes)).await {
            Ok(verdict) => verdict,
            Err(e) if e.is_panic() => Verdict::unfinished("panic"),
            Err(_) => Verdict::unfinished("cancelled"),
        };
        tally.count(parsed, &verdict.outcome, verdict.accepted);
        if let Origin::Seed(n) = input.origin
            && verdict.accepted != expected[n]
        {
            campaign.fail(format!(
                "{decoder}: seed #{n} was {} ({})",
                if verdict.accepted {
                    "accepted"
                } else {
                    "refused"
                },
                verdict.outcome
            ));
        }
        if let Some(violation) = verdict.violation {
            campaign.fail(format!("{decoder}: input #{index}: {violation}"));
        }
    }
    campaign.record(tally);
}
