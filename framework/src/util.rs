//! Small helpers shared across modules.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `text` followed by each of the causes in the chain from `source`, each
/// said once: hyper and rustls wrap one cause in several layers that print
/// the same text.
pub fn with_causes(mut text: String, source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut source = source;
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        source = cause.source();
    }
    text
}

/// Runs `action` on `target` each time the process gets SIGHUP, for as
/// long as `target` is alive elsewhere (it is held weakly, so that a
/// stopped server's reload task ends with it). `what` names the target in
/// the warning logged when signals cannot be watched. Does nothing off Unix.
pub fn on_hangup<T>(target: &std::sync::Arc<T>, what: &str, action: impl Fn(&T) + Send + 'static)
where
    T: ?Sized + Send + Sync + 'static,
{
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let weak = std::sync::Arc::downgrade(target);
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(e) => {
                tracing::warn!("{what} will not reload on SIGHUP: {e}");
                return;
            }
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let Some(target) = weak.upgrade() else {
                    return;
                };
                action(&target);
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (target, what, action);
}

/// DataFusion's cache settings for Ballista's processes: no cache of file
/// listings. A listing cached by the scheduler would hide the files an
/// executor has just written (`INSERT INTO`, `COPY`) from the next query;
/// DataFusion only invalidates its cache for writes made in the same process.
pub fn cache_settings() -> datafusion::execution::cache::cache_manager::CacheManagerConfig {
    datafusion::execution::cache::cache_manager::CacheManagerConfig::default()
        .with_list_files_cache_limit(0)
}

/// Stack each poll of a [`LargeStack`] future runs on. Only the pages a poll
/// touches are committed; the rest is address space.
pub const PLANNING_STACK_BYTES: usize = 256 << 20;

/// A future whose every poll runs on a stack of [`PLANNING_STACK_BYTES`].
///
/// Planning a query walks its expressions recursively, and not every walk in
/// DataFusion grows its stack on demand (formatting a column name, cloning
/// and dropping an expression do not). A runtime worker's stack is 2 MiB by
/// default; the scheduler plans each job on this one instead, so that an
/// expression as deep as the limits allow cannot abort the process.
pub struct LargeStack<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> LargeStack<F> {
    /// Wraps `future`.
    pub fn new(future: F) -> Self {
        Self {
            inner: Box::pin(future),
        }
    }
}

impl<F: Future> Future for LargeStack<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let inner = self.inner.as_mut();
        stacker::grow(PLANNING_STACK_BYTES, move || inner.poll(cx))
    }
}

/// Characters of a name or id from the network shown in a log line or an
/// error; the rest is summarised by its length.
pub const LOGGED_CHARS: usize = 200;

/// Characters of a message from the network (an error report) shown in a
/// log line.
pub const LOGGED_MESSAGE_CHARS: usize = 4000;

/// A string from the network made safe to log: control characters
/// (newlines forge log lines, escape sequences drive terminals) are shown
/// escaped, and anything past [`LOGGED_CHARS`] characters is cut, with the
/// full length said.
pub fn loggable(value: &str) -> Loggable<'_> {
    Loggable(value, LOGGED_CHARS)
}

/// [`loggable`] for messages, such as errors reported by another process:
/// cut at [`LOGGED_MESSAGE_CHARS`].
pub fn loggable_message(value: &str) -> Loggable<'_> {
    Loggable(value, LOGGED_MESSAGE_CHARS)
}

/// See [`loggable`].
#[derive(Debug, Clone, Copy)]
pub struct Loggable<'a>(&'a str, usize);

impl std::fmt::Display for Loggable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        for (shown, c) in self.0.chars().enumerate() {
            if shown == self.1 {
                return write!(f, "…({} bytes in all)", self.0.len());
            }
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                for e in c.escape_default() {
                    f.write_char(e)?;
                }
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod loggable_tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_values_cut() {
        assert_eq!(
            loggable("a\nINFO forged\x1b[2J").to_string(),
            "a\\nINFO forged\\u{1b}[2J"
        );
        let long = "x".repeat(5000);
        let shown = loggable(&long).to_string();
        assert!(shown.starts_with(&"x".repeat(LOGGED_CHARS)));
        assert!(shown.ends_with("…(5000 bytes in all)"), "{shown}");
    }
}

/// Runs a decoder of bytes from another process, turning a panic inside it
/// (arrow and datafusion-proto assert on some malformed inputs) into an
/// `InvalidInput` error naming `what`, so a bad message fails its request
/// rather than a thread.
pub fn decode_guarded<T, E: From<crate::error::BallistaError>>(
    what: &str,
    decode: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    GUARDED_DECODES.with(|depth| depth.set(depth.get() + 1));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode));
    GUARDED_DECODES.with(|depth| depth.set(depth.get() - 1));
    outcome.unwrap_or_else(|payload| {
        let reason = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(crate::error::BallistaError::InvalidInput(format!(
            "malformed {what}: {}",
            loggable_message(&reason)
        ))
        .into())
    })
}

thread_local! {
    static GUARDED_DECODES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether the current thread runs inside [`decode_guarded`], for a panic
/// hook that tells a panic the decoder turns into an error from one that
/// escapes (fuzz tests count only the latter as findings).
pub fn inside_guarded_decoder() -> bool {
    GUARDED_DECODES.with(|depth| depth.get() > 0)
}

/// A stream whose polls run as [`decode_guarded`] does: a panic inside
/// (arrow's IPC reader asserts on some malformed messages) ends the stream
/// with an `InvalidInput` error naming `what`.
pub struct DecodeGuardedStream<S> {
    inner: Option<S>,
    what: &'static str,
}

impl<S> DecodeGuardedStream<S> {
    /// Guards `inner`, which decodes `what` (named in the error).
    pub fn new(inner: S, what: &'static str) -> Self {
        Self {
            inner: Some(inner),
            what,
        }
    }
}

impl<S, T, E> futures::Stream for DecodeGuardedStream<S>
where
    S: futures::Stream<Item = Result<T, E>> + Unpin,
    E: From<crate::error::BallistaError>,
{
    type Item = Result<T, E>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use futures::StreamExt;
        let what = self.what;
        let Some(inner) = self.inner.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let mut poll = None;
        let outcome = decode_guarded(what, || {
            poll = Some(inner.poll_next_unpin(cx));
            Ok::<(), E>(())
        });
        match (outcome, poll) {
            (Ok(()), Some(poll)) => poll,
            (Err(error), _) => {
                self.inner = None;
                std::task::Poll::Ready(Some(Err(error)))
            }
            (Ok(()), None) => std::task::Poll::Pending,
        }
    }
}

/// `text` cut to at most `limit` bytes at a character boundary, with `…`
/// when something was cut.
pub fn cut_at_char(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let cut = (0..=limit)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}…", &text[..cut])
}

/// The URL a process on this machine reaches a listener bound to `addr`
/// at (loopback when it is bound to all interfaces).
pub fn local_url(addr: std::net::SocketAddr, tls: bool) -> String {
    let ip = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{ip}:{}", addr.port())
}
