//! Limits per gRPC call: the size of each request by method, the bytes of
//! unfinished requests held at once, and the time to an answer.
//!
//! tonic limits message size per service, but one service mixes calls that
//! need kilobytes (a heartbeat) with calls that carry plans. This layer
//! counts the bytes of each request body as they arrive and fails the call
//! with `RESOURCE_EXHAUSTED`, naming the limit, as soon as the request grows
//! past the limit of its method or the listener holds too many bytes of
//! requests still arriving; a call not answered in time fails with
//! `DEADLINE_EXCEEDED`, which also frees a request sent one byte short.
//! A call whose answer waits for a job to run (Flight SQL's
//! `GetFlightInfo`) has that deadline for its request to arrive only.
//! A long-lived stream of messages (an executor's status reports) has the
//! size limit per message, holds against the listener's budget only the
//! bytes of the message still arriving, and no deadline: it lives as long
//! as its peer, whose connection the keepalive pings watch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;

use crate::config::ServerLimits;

/// The limits of one listener's calls.
#[derive(Debug)]
pub struct CallLimits {
    plan_methods: &'static [&'static str],
    job_methods: &'static [&'static str],
    stream_methods: &'static [&'static str],
    plan_bytes: u64,
    control_bytes: u64,
    pending_budget: u64,
    pending: AtomicU64,
    timeout: Duration,
    section: &'static str,
}

impl CallLimits {
    /// Limits from `limits` (read from the TOML section `section`, such as
    /// `scheduler.server`, named in refusals). `plan_methods` are full gRPC
    /// paths (`/ballista.SchedulerGrpc/ExecuteQuery`) allowed
    /// `max_plan_message_bytes`; every other method gets
    /// `max_control_message_bytes`.
    pub fn new(
        limits: &ServerLimits,
        plan_methods: &'static [&'static str],
        section: &'static str,
    ) -> Self {
        Self {
            plan_methods,
            job_methods: &[],
            stream_methods: &[],
            plan_bytes: limits.max_plan_message_bytes.0,
            control_bytes: limits.max_control_message_bytes.0,
            pending_budget: limits.max_pending_request_bytes.0,
            pending: AtomicU64::new(0),
            timeout: Duration::from_secs(limits.request_timeout_secs),
            section,
        }
    }

    /// These limits, with `methods` (full gRPC paths) answered when a job
    /// has run: the deadline bounds the arrival of their request, not the
    /// answer, which comes when the job ends (or fails after its own
    /// `job_timeout_secs`).
    pub fn answering_after_jobs(mut self, methods: &'static [&'static str]) -> Self {
        self.job_methods = methods;
        self
    }

    /// These limits, with `methods` (full gRPC paths) taking a stream of
    /// messages that lasts as long as the peer: the size limit applies to
    /// each message, and there is no deadline.
    pub fn streaming(mut self, methods: &'static [&'static str]) -> Self {
        self.stream_methods = methods;
        self
    }

    fn size_limit_of(&self, path: &str) -> (u64, &'static str) {
        if self.plan_methods.contains(&path) {
            (self.plan_bytes, "max_plan_message_bytes")
        } else {
            (self.control_bytes, "max_control_message_bytes")
        }
    }
}

/// Wraps a service so that its calls keep to [`CallLimits`].
#[derive(Debug, Clone)]
pub struct CallLimitsLayer {
    limits: Arc<CallLimits>,
}

impl CallLimitsLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: CallLimits) -> Self {
        Self {
            limits: Arc::new(limits),
        }
    }
}

impl<S> tower::Layer<S> for CallLimitsLayer {
    type Service = CallLimitsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLimitsService {
            inner,
            limits: Arc::clone(&self.limits),
        }
    }
}

/// The service [`CallLimitsLayer`] produces.
#[derive(Debug, Clone)]
pub struct CallLimitsService<S> {
    inner: S,
    limits: Arc<CallLimits>,
}

type BoxedResponse<E> =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, E>> + Send + 'static>>;

impl<S> tower::Service<http::Request<Body>> for CallLimitsService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxedResponse<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let limits = Arc::clone(&self.limits);
        let method = crate::util::loggable(request.uri().path()).to_string();
        let (size_limit, size_setting) = limits.size_limit_of(request.uri().path());
        let waits_for_job = limits.job_methods.contains(&request.uri().path());
        let streams = limits.stream_methods.contains(&request.uri().path());
        let arrival_deadline = waits_for_job.then(|| Box::pin(tokio::time::sleep(limits.timeout)));
        let request = request.map(|body| {
            Body::new(LimitedBody {
                inner: body,
                remaining: size_limit,
                size_limit,
                size_setting,
                held: 0,
                limits: Arc::clone(&limits),
                method: method.clone(),
                framing: GrpcFraming::default(),
                arrival_deadline,
                per_message: streams,
            })
        });
        let call = self.inner.call(request);
        if waits_for_job || streams {
            return Box::pin(call);
        }
        Box::pin(async move {
            match tokio::time::timeout(limits.timeout, call).await {
                Ok(answer) => answer,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "the call to {method} was not received and answered within {}s ({}.request_timeout_secs)",
                    limits.timeout.as_secs(),
                    limits.section
                ))
                .into_http()),
            }
        })
    }
}

/// A request body that fails once more than its method's limit has
/// arrived or a gRPC message declares more, or when the listener holds too
/// many bytes of unfinished requests. The bytes it counted are returned to
/// the listener when it is dropped.
struct LimitedBody {
    inner: Body,
    remaining: u64,
    size_limit: u64,
    size_setting: &'static str,
    held: u64,
    limits: Arc<CallLimits>,
    method: String,
    framing: GrpcFraming,
    /// For a call answered after a job: when its request must have arrived.
    arrival_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A long-lived stream: the limit is per message, and a message's
    /// bytes are returned to the listener once it has arrived whole.
    per_message: bool,
}

/// Where a body is in gRPC's framing: each message is a 5-byte prefix (a
/// flag and a big-endian length) and that many bytes.
#[derive(Debug, Default)]
struct GrpcFraming {
    prefix: [u8; 5],
    prefix_read: usize,
    message_left: u64,
    /// The length the message being read declared.
    declared: u64,
}

impl GrpcFraming {
    /// Follows `data`; returns the largest message length a prefix in it
    /// declared.
    fn follow(&mut self, mut data: &[u8]) -> u64 {
        let mut largest = 0;
        while !data.is_empty() {
            if self.message_left > 0 {
                let skip = self.message_left.min(data.len() as u64);
                self.message_left -= skip;
                data = &data[skip as usize..];
                continue;
            }
            let take = (5 - self.prefix_read).min(data.len());
            self.prefix[self.prefix_read..self.prefix_read + take].copy_from_slice(&data[..take]);
            self.prefix_read += take;
            data = &data[take..];
            if self.prefix_read == 5 {
                let declared = u64::from(u32::from_be_bytes(
                    self.prefix[1..5].try_into().expect("4 bytes"),
                ));
                largest = largest.max(declared);
                self.message_left = declared;
                self.declared = declared;
                self.prefix_read = 0;
            }
        }
        largest
    }

    /// Bytes of the message still arriving that have arrived (0 between
    /// messages).
    fn arriving(&self) -> u64 {
        if self.prefix_read > 0 {
            self.prefix_read as u64
        } else if self.message_left > 0 {
            5 + self.declared - self.message_left
        } else {
            0
        }
    }
}

impl LimitedBody {
    fn too_large(&self) -> Status {
        Status::resource_exhausted(format!(
            "the request to {} is larger than {} bytes ({}.{})",
            self.method, self.size_limit, self.limits.section, self.size_setting
        ))
    }

    fn hold(&mut self, data: &[u8]) -> Result<(), Status> {
        let len = data.len() as u64;
        // A message that declares more than the limit is refused before
        // its bytes arrive (tonic would otherwise answer with its own,
        // nameless limit).
        let too_long = !self.per_message && len > self.remaining;
        if too_long || self.framing.follow(data) > self.size_limit {
            return Err(self.too_large());
        }
        // A stream holds only the message still arriving: the bytes of
        // those before it are the decoder's, and are returned.
        let len = if self.per_message {
            let arriving = self.framing.arriving();
            if arriving <= self.held {
                self.limits
                    .pending
                    .fetch_sub(self.held - arriving, Ordering::AcqRel);
                self.held = arriving;
                return Ok(());
            }
            arriving - self.held
        } else {
            len
        };
        let before = self.limits.pending.fetch_add(len, Ordering::AcqRel);
        self.held += len;
        if before + len > self.limits.pending_budget {
            return Err(Status::resource_exhausted(format!(
                "the server holds more than {} bytes of requests still arriving \
                 ({}.max_pending_request_bytes); try again later",
                self.limits.pending_budget, self.limits.section
            )));
        }
        if !self.per_message {
            self.remaining -= len;
        }
        Ok(())
    }
}

impl Drop for LimitedBody {
    fn drop(&mut self) {
        self.limits.pending.fetch_sub(self.held, Ordering::AcqRel);
    }
}

impl HttpBody for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(deadline) = this.arrival_deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.arrival_deadline = None;
            return Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                "the request to {} did not arrive within {}s ({}.request_timeout_secs)",
                this.method,
                this.limits.timeout.as_secs(),
                this.limits.section
            )))));
        }
        let Some(frame) = ready!(Pin::new(&mut this.inner).poll_frame(cx)) else {
            this.arrival_deadline = None;
            return Poll::Ready(None);
        };
        let frame = frame?;
        if let Some(data) = frame.data_ref() {
            this.hold(data)?;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A request body of fixed chunks.
    struct Chunks(VecDeque<Bytes>);

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|c| Ok(Frame::data(c))))
        }
    }

    fn message(len: usize) -> Bytes {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&(len as u32).to_be_bytes());
        bytes.resize(5 + len, b'x');
        Bytes::from(bytes)
    }

    fn limited(limits: &Arc<CallLimits>, chunks: Vec<Bytes>, per_message: bool) -> LimitedBody {
        LimitedBody {
            inner: Body::new(Chunks(chunks.into())),
            remaining: limits.control_bytes,
            size_limit: limits.control_bytes,
            size_setting: "max_control_message_bytes",
            held: 0,
            limits: Arc::clone(limits),
            method: "/test/Method".into(),
            framing: GrpcFraming::default(),
            arrival_deadline: None,
            per_message,
        }
    }

    /// The frames `body` yields until it ends or fails, and the listener's
    /// held bytes after each.
    async fn read(mut body: LimitedBody) -> (Vec<u64>, Option<Status>) {
        let mut held = Vec::new();
        loop {
            match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                Some(Ok(_)) => held.push(body.limits.pending.load(Ordering::Acquire)),
                Some(Err(status)) => return (held, Some(status)),
                None => return (held, None),
            }
        }
    }

    fn test_limits() -> Arc<CallLimits> {
        let limits = ServerLimits {
            max_control_message_bytes: crate::config::ByteSize(100),
            ..ServerLimits::default()
        };
        Arc::new(CallLimits::new(&limits, &[], "test.server"))
    }

    #[tokio::test]
    async fn a_stream_has_its_size_limit_per_message_and_holds_bytes_only_while_one_arrives() {
        let limits = test_limits();
        // Three messages of 80 bytes: 255 bytes in all, each under 100. The
        // second arrives in two chunks, and is held while it arrives.
        let second = message(80);
        let chunks = vec![
            message(80),
            second.slice(..40),
            second.slice(40..),
            message(80),
        ];
        let (held, failure) = read(limited(&limits, chunks.clone(), true)).await;
        assert!(failure.is_none(), "{failure:?}");
        assert_eq!(held, vec![0, 40, 0, 0]);
        // A single call's request has the limit over its whole body.
        let (_, failure) = read(limited(&limits, chunks, false)).await;
        let failure = failure.expect("the whole body is over the limit");
        assert_eq!(failure.code(), tonic::Code::ResourceExhausted);
        assert!(
            failure
                .message()
                .contains("larger than 100 bytes (test.server.max_control_message_bytes)"),
            "{failure:?}"
        );
        // Chunks that straddle messages: only the bytes of the one still
        // arriving are held.
        let next = message(80);
        let mut straddling = message(80).to_vec();
        straddling.extend_from_slice(&next[..10]);
        let chunks = vec![Bytes::from(straddling), next.slice(10..)];
        let (held, failure) = read(limited(&limits, chunks, true)).await;
        assert!(failure.is_none(), "{failure:?}");
        assert_eq!(held, vec![10, 0]);
        // One message over the limit fails a stream too, before it arrives.
        let (held, failure) = read(limited(&limits, vec![message(80), message(101)], true)).await;
        assert_eq!(held, vec![0]);
        assert_eq!(
            failure.expect("too large").code(),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(limits.pending.load(Ordering::Acquire), 0);
    }

    #[test]
    fn declared_message_lengths_are_read_across_chunks() {
        let mut framing = GrpcFraming::default();
        // A 3-byte message, then a prefix declaring 1000 split over chunks.
        assert_eq!(framing.follow(&[0, 0, 0, 0, 3, b'a', b'b']), 3);
        assert_eq!(framing.follow(&[b'c', 0, 0, 0]), 0);
        assert_eq!(framing.follow(&[3, 232, b'x']), 1000);
    }
}
