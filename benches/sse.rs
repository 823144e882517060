//! Throughput of the SSE decoder on a realistic chat-completion stream, the
//! way upstreams deliver it: one event per read (a server flushing after
//! every token) and MTU-sized reads that cut events anywhere.
//!
//! `reframe` measures the gateway's whole per-event work on a 64-event
//! answer read at once (as a fast upstream delivers it) with the shipped
//! re-framer (`gateway::stream::upstream::Reframer`, the very type every
//! proxied stream goes through): decode, find the `model` of each event,
//! splice the client's name in and hand out the items the connection driver
//! writes; against decoding alone. Throughput is reported in bytes;
//! events/s is 66 (64 tokens, a role and a stop event) times the answers/s
//! criterion shows.

use std::hint::black_box;

use bytes::Bytes;
use chat2api::gateway::stream::upstream::{Native, Reframed, Reframer};
use chat2api::sse::SseDecoder;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const EVENTS: usize = 200;
const MTU_PIECE: usize = 1500;

/// 200 `chat.completion.chunk` events in OpenAI's wire form, `[DONE]` last.
fn chat_stream() -> Vec<Bytes> {
    let words = [
        "The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".",
    ];
    let mut events: Vec<Bytes> = (0..EVENTS - 1)
        .map(|i| {
            let word = words[i % words.len()];
            Bytes::from(format!(
                "data: {{\"id\":\"chatcmpl-9xYzAbCdEfGhIjKlMnOpQrStUv\",\"object\":\"chat.completion.chunk\",\
                 \"created\":1718000000,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_abc123\",\
                 \"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{word}\"}},\"logprobs\":null,\
                 \"finish_reason\":null}}]}}\n\n"
            ))
        })
        .collect();
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

/// Drains every event, as the connection driver does after each read.
fn decode(pieces: &[Bytes]) -> usize {
    let mut dec = SseDecoder::new();
    let mut n = 0;
    for piece in pieces {
        dec.push(piece.clone());
        while let Some(event) = dec.next_event() {
            black_box(&event);
            n += 1;
        }
    }
    n + usize::from(dec.finish().is_some())
}

/// A 64-token answer: a role event, 64 content events, a stop event and
/// `[DONE]`, in one piece.
fn long_answer() -> Bytes {
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-bench0001\",\"object\":\"chat.completion.chunk\",\
             \"created\":1700000000,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_bench\",\
             \"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    let mut body = chunk(r#"{"role":"assistant","content":""}"#, "null");
    for i in 0..64 {
        body.push_str(&chunk(&format!(r#"{{"content":" word{i}"}}"#), "null"));
    }
    body.push_str(&chunk("{}", r#""stop""#));
    body.push_str("data: [DONE]\n\n");
    Bytes::from(body)
}

/// Re-frame every event of `body` with the shipped re-framer, the items
/// the connection driver writes (`[DONE]` included); or, without
/// `rewrite`, only decode the events it is made of.
fn reframe(body: &Bytes, alias: &Bytes, rewrite: bool) -> usize {
    if !rewrite {
        let mut dec = SseDecoder::new();
        dec.push(body.clone());
        let mut n = 0;
        while let Some(event) = dec.next_event() {
            black_box(&event);
            n += 1;
        }
        return n;
    }
    let mut r = Reframer::new(16 << 20, alias.clone(), None, Native::Chat);
    r.push(body.clone());
    let mut n = 0;
    while let Reframed::Item(item) = r.next_item() {
        black_box(&item);
        n += 1;
    }
    n
}

fn bench(c: &mut Criterion) {
    let answer = long_answer();
    let alias = Bytes::from_static(b"\"DeepSeek-V3.2\"");
    assert_eq!(reframe(&answer, &alias, true), 67);
    let mut group = c.benchmark_group("reframe_64_event_answer");
    group.throughput(Throughput::Bytes(answer.len() as u64));
    group.bench_function("decode_only", |b| {
        b.iter(|| reframe(black_box(&answer), &alias, false))
    });
    group.bench_function("decode_and_rewrite_model", |b| {
        b.iter(|| reframe(black_box(&answer), &alias, true))
    });
    group.finish();

    let per_event = chat_stream();
    let body: Vec<u8> = per_event.concat();
    let mtu: Vec<Bytes> = body.chunks(MTU_PIECE).map(Bytes::copy_from_slice).collect();
    assert_eq!(decode(&per_event), EVENTS);
    assert_eq!(decode(&mtu), EVENTS);

    let mut group = c.benchmark_group("sse_decode");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("one_event_per_piece", |b| {
        b.iter(|| decode(black_box(&per_event)))
    });
    group.bench_function("1500_byte_pieces", |b| b.iter(|| decode(black_box(&mtu))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
