//! Parser throughput on realistic wire samples, in bytes per second.
//!
//! Each group puts chat2api's code beside a baseline in the same run:
//! `parse_request` beside bare `httparse` on the same head (the cost of
//! offsets, framing checks and the frozen `Bytes`), and the chunked decoder
//! beside a Content-Length body of the same size.

use bytes::BytesMut;
use chat2api::http1::encode::{ChunkSize, CHUNK_END, LAST_CHUNK};
use chat2api::http1::{parse_request, BodyDecoder, BodyFraming, Frame, Limits};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

/// The head the official OpenAI Python SDK sends for a chat completion.
const SDK_HEAD: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
Accept-Encoding: gzip, deflate\r\n\
Connection: keep-alive\r\n\
Accept: application/json\r\n\
Content-Type: application/json\r\n\
User-Agent: OpenAI/Python 1.54.4\r\n\
X-Stainless-Lang: python\r\n\
X-Stainless-Package-Version: 1.54.4\r\n\
X-Stainless-OS: Linux\r\n\
X-Stainless-Arch: x64\r\n\
X-Stainless-Runtime: CPython\r\n\
X-Stainless-Runtime-Version: 3.12.7\r\n\
Authorization: Bearer sk-local-one-0123456789abcdefghijklmnopqrstuvwxyz\r\n\
X-Stainless-Async: false\r\n\
X-Stainless-Retry-Count: 0\r\n\
Content-Length: 16384\r\n\r\n";

const BODY_LEN: usize = 16 * 1024;

fn bench_parse_request(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("parse_request");
    group.throughput(Throughput::Bytes(SDK_HEAD.len() as u64));
    group.bench_function("httparse_baseline", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 100];
            let mut req = httparse::Request::new(&mut headers);
            black_box(req.parse(black_box(SDK_HEAD)).ok());
        })
    });
    group.bench_function("chat2api", |b| {
        b.iter_batched(
            || BytesMut::from(SDK_HEAD),
            |mut buf| {
                let head = parse_request(&mut buf, &limits).ok().flatten();
                black_box(head.map(|h| h.framing()))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A 16 KiB body cut into `chunk`-sized chunks, the shape of a streamed upload.
fn chunked_wire(chunk: usize) -> Vec<u8> {
    let data = vec![b'x'; BODY_LEN];
    let mut wire = Vec::with_capacity(BODY_LEN + 256);
    for piece in data.chunks(chunk) {
        wire.extend_from_slice(ChunkSize::new(piece.len()).as_bytes());
        wire.extend_from_slice(piece);
        wire.extend_from_slice(CHUNK_END);
    }
    wire.extend_from_slice(LAST_CHUNK);
    wire
}

fn decode_all(framing: BodyFraming, limits: &Limits, mut buf: BytesMut) -> u64 {
    let mut decoder = BodyDecoder::new(framing, limits);
    while let Ok(Some(Frame::Data(d))) = decoder.decode(&mut buf) {
        black_box(d);
    }
    decoder.decoded_len()
}

fn bench_body(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("body_16k");
    group.throughput(Throughput::Bytes(BODY_LEN as u64));
    let plain = vec![b'x'; BODY_LEN];
    group.bench_function("content_length_baseline", |b| {
        b.iter_batched(
            || BytesMut::from(&plain[..]),
            |buf| decode_all(BodyFraming::Length(BODY_LEN as u64), &limits, buf),
            BatchSize::SmallInput,
        )
    });
    for chunk in [1024, BODY_LEN] {
        let wire = chunked_wire(chunk);
        group.bench_function(format!("chunked_{chunk}"), |b| {
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |buf| decode_all(BodyFraming::Chunked, &limits, buf),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_parse_request, bench_body);
criterion_main!(benches);
