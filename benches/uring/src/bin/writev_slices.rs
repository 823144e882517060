//! What a slice of a vectored write costs: one 66-event streamed answer
//! (17 226 bytes, cut as chat2api's writer cuts it) written to a loopback
//! TCP socket with `writev` as 330 slices (5 per event: `data: `, the
//! payload before the model, the model, the rest, `\n\n`), as 264 (the end
//! of one event and the start of the next in one slice), as 132 (2 per
//! event) and as 1; a thread on the other end reads and discards.
//!
//!   cargo run --release --bin writev_slices     # from benches/uring
//!
//! Prints the median time per `writev` over 15 rounds of 2 000 writes.

use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

const EVENTS: usize = 66;
/// `data: `, the payload before the model, the model, the rest, `\n\n`.
const PIECES: [usize; 5] = [6, 90, 13, 150, 2];

fn main() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    writer.set_nodelay(true).unwrap();
    let (mut reader, _) = listener.accept().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    // Each piece apart from the next in memory, as slices of an upstream
    // read and of the client's model are.
    let memory = vec![b'x'; 1 << 20];
    let event_len: usize = PIECES.iter().sum();
    let total = EVENTS * event_len;
    let mut cuts: Vec<(&str, Vec<&[u8]>)> = Vec::new();
    let mut five = Vec::new();
    let mut off = 0;
    for _ in 0..EVENTS {
        for len in PIECES {
            five.push(&memory[off..off + len]);
            off += len + 16;
        }
    }
    let mut four = Vec::new();
    for (i, piece) in five.iter().enumerate() {
        // `\n\n` then the next `data: `: one slice.
        match i % 5 {
            4 if i + 1 < five.len() => four.push(&memory[500_000 + i..500_000 + i + 8]),
            0 if i > 0 => {}
            _ => four.push(piece),
        }
    }
    let two: Vec<&[u8]> = (0..EVENTS)
        .flat_map(|e| {
            let at = 700_000 + e * 400;
            [&memory[at..at + 13], &memory[at + 100..at + event_len + 87]]
        })
        .collect();
    cuts.push(("5 slices per event", five));
    cuts.push(("4 slices per event", four));
    cuts.push(("2 slices per event", two));
    cuts.push(("1 slice", vec![&memory[..total]]));
    for (name, pieces) in &cuts {
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        assert_eq!(len, total, "{name}");
        let slices: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
        let mut rounds: Vec<f64> = (0..15)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..2000 {
                    let n = writer.write_vectored(&slices).unwrap();
                    assert_eq!(n, total, "a short write");
                }
                start.elapsed().as_secs_f64() / 2000.0 * 1e6
            })
            .collect();
        rounds.sort_by(f64::total_cmp);
        println!("{name:20} {:4} slices, {total} bytes: {:6.2} us per writev (median of 15)", slices.len(), rounds[7]);
    }
}
