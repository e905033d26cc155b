//! Raw gRPC calls: requests sent as bytes, answers read as codes.

use super::*;

/// A codec that sends the request bytes as they are and returns the
/// response bytes undecoded.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawBytes;

impl Codec for RawBytes {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }

    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl Encoder for RawBytes {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Service {
    Scheduler,
    Executor,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum CallShape {
    Unary,
    ServerStreaming,
    /// One request message, then the responses.
    BidiStreaming,
}

/// A valid request and the code it must be answered with.
#[derive(Clone)]
pub(crate) struct Seed {
    pub(crate) bytes: Vec<u8>,
    pub(crate) answer: Code,
}

pub(crate) fn seed<M: Message>(message: &M, answer: Code) -> Seed {
    Seed {
        bytes: message.encode_to_vec(),
        answer,
    }
}

/// One RPC method and its seeds.
pub(crate) struct NetworkTarget {
    pub(crate) service: Service,
    /// `/package.Service/Method`, as the generated clients call it.
    pub(crate) method: &'static str,
    pub(crate) shape: CallShape,
    /// Whether bytes parse as the method's request message.
    pub(crate) parses: fn(&[u8]) -> bool,
    pub(crate) seeds: Vec<Seed>,
}

impl NetworkTarget {
    pub(crate) fn new<M: Message + Default>(
        service: Service,
        method: &'static str,
        shape: CallShape,
        seeds: Vec<Seed>,
    ) -> Self {
        Self {
            service,
            method,
            shape,
            parses: parses_as::<M>,
            seeds,
        }
    }
}

/// How a call ended.
pub(crate) enum Answer {
    Code(Code),
    NoAnswer,
}

pub(crate) async fn call(channel: AuthChannel, target: &NetworkTarget, body: Vec<u8>) -> Answer {
    let exchanged = exchange(channel, target.method, target.shape, Bytes::from(body));
    match tokio::time::timeout(CALL_TIMEOUT, exchanged).await {
        Ok(Ok(())) => Answer::Code(Code::Ok),
        Ok(Err(status)) => Answer::Code(status.code()),
        Err(_) => Answer::NoAnswer,
    }
}

pub(crate) async fn exchange(
    channel: AuthChannel,
    method: &'static str,
    shape: CallShape,
    body: Bytes,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("the channel is not ready: {e}")))?;
    let path = PathAndQuery::from_static(method);
    match shape {
        CallShape::Unary => grpc
            .unary(Request::new(body), path, RawBytes)
            .await
            .map(|_| ()),
        CallShape::ServerStreaming => {
            let responses = grpc
                .server_streaming(Request::new(body), path, RawBytes)
                .await?;
            drain(responses.into_inner()).await
        }
        CallShape::BidiStreaming => {
            let requests = futures::stream::once(std::future::ready(body));
            let responses = grpc
                .streaming(Request::new(requests), path, RawBytes)
                .await?;
            drain(responses.into_inner()).await
        }
    }
}

/// Reads responses until the stream ends, fails, or [`STREAM_DRAIN_BOUND`]
/// passes (a stream still open then was answered).
pub(crate) async fn drain(mut responses: Streaming<Bytes>) -> Result<(), Status> {
    let deadline = tokio::time::Instant::now() + STREAM_DRAIN_BOUND;
    loop {
        match tokio::time::timeout_at(deadline, responses.message()).await {
            Err(_) | Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(_))) => {}
            Ok(Err(status)) => return Err(status),
        }
    }
}

pub(crate) async fn connect(url: &str) -> Channel {
    flight_endpoint(url, &Default::default())
        .expect("a valid URL")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}
