//! Throughput of the SSE decoder on a realistic chat-completion stream, the
//! way upstreams deliver it: one event per read (a server flushing after
//! every token) and MTU-sized reads that cut events anywhere.

use std::hint::black_box;

use bytes::Bytes;
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

fn bench(c: &mut Criterion) {
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
