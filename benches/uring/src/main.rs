//! Issue 20's io_uring measurement: the same HTTP/1.1 keep-alive relay (a
//! client's request to a pooled upstream connection, the answer back as it
//! arrives) on two I/O paths, one worker each:
//!
//!   uring-relay epoll LISTEN_PORT UPSTREAM_PORT   # tokio current-thread (epoll), as chat2api's workers
//!   uring-relay uring LISTEN_PORT UPSTREAM_PORT   # io_uring: batched submissions, multishot receive
//!
//! Both do the same user-space work (httparse on each request and answer
//! head); the difference in CPU per request between them is what an
//! io_uring worker could save chat2api. `benches/uring/run.sh` measures
//! both beside chat2api and nginx. Not part of chat2api's build.

mod epoll;
mod http;
mod uring;

use std::net::{SocketAddr, TcpListener};

/// Bytes per socket read (and per ring buffer).
pub const READ_SIZE: usize = 16 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, listen, upstream) = match &args[..] {
        [_, mode, listen, upstream] => (mode.as_str(), listen, upstream),
        _ => usage(),
    };
    let port = |s: &str| s.parse::<u16>().unwrap_or_else(|_| usage());
    let listener = TcpListener::bind(("127.0.0.1", port(listen))).expect("bind the listen port");
    let upstream = SocketAddr::from(([127, 0, 0, 1], port(upstream)));
    let result = match mode {
        "epoll" => epoll::run(listener, upstream),
        "uring" => uring::run(listener, upstream),
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("uring-relay: {e}");
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!("usage: uring-relay epoll|uring LISTEN_PORT UPSTREAM_PORT");
    std::process::exit(2)
}
