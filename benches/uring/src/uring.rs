//! The relay on io_uring: one thread, one ring, as one chat2api worker would
//! run on it. Every kernel call of a loop turn goes in one `io_uring_enter`
//! (the sends and re-armed receives of every completion it handled, then a
//! wait for the next completion); each socket has one multishot receive
//! armed (`IORING_RECV_MULTISHOT`) that fills buffers from a registered
//! buffer ring (`IORING_REGISTER_PBUF_RING`); the listener has one
//! multishot accept. An upstream read is sent to the client straight from
//! its ring buffer, which goes back to the ring when the send completes.
//! The ring is set up `SINGLE_ISSUER | DEFER_TASKRUN`: completions are
//! produced only when this thread asks for them, so no interrupt-time task
//! work (the mode liburing recommends for one thread per ring).

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::http::{request_len, Answer};
use crate::READ_SIZE;

/// Ring buffers for the multishot receives (a power of two, at most 32 768).
const BUFS: u16 = 2048;
/// The buffer group of those buffers.
const GROUP: u16 = 0;

// What a completion is for: the low 2 bits of its user data; the rest is
// the connection's index.
const ACCEPT: u64 = 0;
const RECV: u64 = 1;
const SEND: u64 = 2;

fn token(idx: usize, op: u64) -> u64 {
    (idx as u64) << 2 | op
}

/// The provided-buffer ring: `BUFS` buffers of `READ_SIZE` bytes and the
/// ring of their descriptors that the kernel takes them from.
struct Buffers {
    mem: Vec<u8>,
    ring: *mut types::BufRingEntry,
    /// Our tail; published to the kernel once per loop turn.
    tail: u16,
}

impl Buffers {
    fn new(submitter: &io_uring::Submitter<'_>) -> io::Result<Buffers> {
        let layout = std::alloc::Layout::from_size_align(BUFS as usize * 16, 4096).unwrap();
        // SAFETY: a non-zero size; the ring lives as long as the process
        // (never freed: the relay runs until killed).
        let ring = unsafe { std::alloc::alloc_zeroed(layout) } as *mut types::BufRingEntry;
        if ring.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let mut bufs = Buffers {
            mem: vec![0; BUFS as usize * READ_SIZE],
            ring,
            tail: 0,
        };
        // SAFETY: the ring memory is valid, aligned and never freed.
        unsafe { submitter.register_buf_ring_with_flags(ring as u64, BUFS, GROUP, 0)? };
        for bid in 0..BUFS {
            bufs.give_back(bid);
        }
        bufs.publish();
        Ok(bufs)
    }

    fn ptr(&self, bid: u16) -> *const u8 {
        self.mem[bid as usize * READ_SIZE..].as_ptr()
    }

    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        &self.mem[bid as usize * READ_SIZE..][..len]
    }

    /// Hands buffer `bid` back to the kernel (visible at the next publish).
    fn give_back(&mut self, bid: u16) {
        // SAFETY: the index is masked into the ring.
        let entry = unsafe { &mut *self.ring.add((self.tail & (BUFS - 1)) as usize) };
        entry.set_addr(self.ptr(bid) as u64);
        entry.set_len(READ_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field of a registered ring, written by us only.
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

enum Chunk {
    /// A request moved out of the client's buffer.
    Owned(Vec<u8>),
    /// An upstream read, still in ring buffer `.0`, `.1` bytes long.
    Ring(u16, usize),
}

enum Role {
    Client {
        req: Vec<u8>,
        upstream: Option<usize>,
    },
    Upstream {
        client: Option<usize>,
        answer: Answer,
    },
}

struct Conn {
    fd: RawFd,
    role: Role,
    /// Chunks to send, in order; the front one's first `.1` bytes are sent.
    out: VecDeque<(Chunk, usize)>,
    sending: bool,
    receiving: bool,
    closed: bool,
}

struct Relay {
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// Idle upstream connections (indexes), the pool.
    idle: Vec<usize>,
    bufs: Buffers,
    /// Entries made while handling completions, pushed before the next enter.
    pending: Vec<squeue::Entry>,
    listener: RawFd,
    upstream: SocketAddr,
}

pub fn run(listener: TcpListener, upstream: SocketAddr) -> io::Result<()> {
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(16384)
        .build(4096)?;
    let (submitter, mut sq, mut cq) = ring.split();
    let mut relay = Relay {
        conns: Vec::new(),
        free: Vec::new(),
        idle: Vec::new(),
        bufs: Buffers::new(&submitter)?,
        pending: Vec::new(),
        listener: listener.as_raw_fd(),
        upstream,
    };
    relay.arm_accept();
    loop {
        for entry in relay.pending.drain(..) {
            // SAFETY: every buffer an entry names lives until its completion
            // (a connection is freed only with no operation in flight).
            while unsafe { sq.push(&entry) }.is_err() {
                sq.sync();
                submitter.submit()?;
                sq.sync();
            }
        }
        sq.sync();
        relay.bufs.publish();
        match submitter.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
            Err(e) => return Err(e),
        }
        cq.sync();
        for cqe in &mut cq {
            relay.complete(cqe);
        }
    }
}

impl Relay {
    fn arm_accept(&mut self) {
        let entry = opcode::AcceptMulti::new(types::Fd(self.listener)).build();
        self.pending.push(entry.user_data(token(0, ACCEPT)));
    }

    fn arm_recv(&mut self, idx: usize) {
        let conn = self.conns[idx].as_mut().unwrap();
        conn.receiving = true;
        let entry = opcode::RecvMulti::new(types::Fd(conn.fd), GROUP).build();
        self.pending.push(entry.user_data(token(idx, RECV)));
    }

    fn add(&mut self, fd: RawFd, role: Role) -> usize {
        let conn = Conn {
            fd,
            role,
            out: VecDeque::new(),
            sending: false,
            receiving: false,
            closed: false,
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                self.conns[idx] = Some(conn);
                idx
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        };
        self.arm_recv(idx);
        idx
    }

    fn complete(&mut self, cqe: cqueue::Entry) {
        let (data, res, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
        let idx = (data >> 2) as usize;
        match data & 3 {
            ACCEPT => {
                if res >= 0 {
                    set_nodelay(res);
                    self.add(
                        res,
                        Role::Client {
                            req: Vec::with_capacity(READ_SIZE),
                            upstream: None,
                        },
                    );
                }
                if !cqueue::more(flags) {
                    self.arm_accept();
                }
            }
            RECV => self.on_recv(idx, res, flags),
            SEND => self.on_send(idx, res),
            _ => unreachable!("two bits, three kinds"),
        }
    }

    fn on_recv(&mut self, idx: usize, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        let bid = cqueue::buffer_select(flags);
        let conn = self.conns[idx].as_mut().unwrap();
        conn.receiving = more;
        if res <= 0 || conn.closed {
            if let Some(bid) = bid {
                self.bufs.give_back(bid);
            }
            if res == -libc::ENOBUFS && !conn.closed {
                if !more {
                    self.arm_recv(idx);
                }
            } else {
                self.close(idx);
            }
            return;
        }
        let (bid, len) = (
            bid.expect("a receive with data names its buffer"),
            res as usize,
        );
        let bytes = self.bufs.bytes(bid, len);
        match &mut conn.role {
            Role::Client { req, .. } => {
                req.extend_from_slice(bytes);
                self.bufs.give_back(bid);
                self.forward(idx);
            }
            Role::Upstream { client, answer } => {
                let done = answer.feed(bytes);
                let client = *client;
                match (client, done) {
                    (Some(c), Ok(done)) => {
                        self.queue(c, Chunk::Ring(bid, len));
                        if done {
                            self.release(idx, c);
                            self.forward(c);
                        }
                    }
                    (_, _) => {
                        self.bufs.give_back(bid);
                        self.close(idx);
                        return;
                    }
                }
            }
        }
        if !more && !self.conns[idx].as_ref().unwrap().closed {
            self.arm_recv(idx);
        }
    }

    /// Sends the client's next whole request upstream, on a pooled
    /// connection or a new one, when it has one and no answer is pending.
    fn forward(&mut self, client: usize) {
        let Some(Conn {
            role: Role::Client { req, upstream },
            closed: false,
            ..
        }) = self.conns[client].as_mut()
        else {
            return;
        };
        if upstream.is_some() {
            return;
        }
        let n = match request_len(req) {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(_) => return self.close(client),
        };
        let rest = req.split_off(n);
        let request = std::mem::replace(req, rest);
        let up = match self.idle.pop() {
            Some(up) => up,
            None => match TcpStream::connect(self.upstream) {
                // A blocking connect: only while the pool warms up.
                Ok(s) => {
                    let fd = s.into_raw_fd();
                    set_nodelay(fd);
                    self.add(
                        fd,
                        Role::Upstream {
                            client: None,
                            answer: Answer::default(),
                        },
                    )
                }
                Err(_) => return self.close(client),
            },
        };
        if let Some(Conn {
            role: Role::Client { upstream, .. },
            ..
        }) = self.conns[client].as_mut()
        {
            *upstream = Some(up);
        }
        if let Some(Conn {
            role: Role::Upstream { client: c, .. },
            ..
        }) = self.conns[up].as_mut()
        {
            *c = Some(client);
        }
        self.queue(up, Chunk::Owned(request));
    }

    /// The answer on `up` is complete: the pair is unlinked and `up` pooled.
    fn release(&mut self, up: usize, client: usize) {
        if let Some(Conn {
            role: Role::Upstream { client: c, .. },
            ..
        }) = self.conns[up].as_mut()
        {
            *c = None;
        }
        if let Some(Conn {
            role: Role::Client { upstream, .. },
            ..
        }) = self.conns[client].as_mut()
        {
            *upstream = None;
        }
        self.idle.push(up);
    }

    fn queue(&mut self, idx: usize, chunk: Chunk) {
        let conn = self.conns[idx].as_mut().unwrap();
        if conn.closed {
            if let Chunk::Ring(bid, _) = chunk {
                self.bufs.give_back(bid);
            }
            return;
        }
        conn.out.push_back((chunk, 0));
        self.flush(idx);
    }

    fn flush(&mut self, idx: usize) {
        let conn = self.conns[idx].as_mut().unwrap();
        if conn.sending || conn.closed {
            return;
        }
        let Some((chunk, sent)) = conn.out.front() else {
            return;
        };
        let (ptr, len) = match chunk {
            Chunk::Owned(v) => (v.as_ptr(), v.len()),
            Chunk::Ring(bid, len) => (self.bufs.ptr(*bid), *len),
        };
        // SAFETY: in bounds of the chunk, which stays queued until sent.
        let ptr = unsafe { ptr.add(*sent) };
        let entry = opcode::Send::new(types::Fd(conn.fd), ptr, (len - sent) as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        conn.sending = true;
        self.pending.push(entry.user_data(token(idx, SEND)));
    }

    fn on_send(&mut self, idx: usize, res: i32) {
        let conn = self.conns[idx].as_mut().unwrap();
        conn.sending = false;
        if res < 0 || conn.closed {
            return self.close(idx);
        }
        let (chunk, sent) = conn
            .out
            .front_mut()
            .expect("a send completes its front chunk");
        *sent += res as usize;
        let len = match chunk {
            Chunk::Owned(v) => v.len(),
            Chunk::Ring(_, len) => *len,
        };
        if *sent == len {
            if let Some((Chunk::Ring(bid, _), _)) = conn.out.pop_front() {
                self.bufs.give_back(bid);
            }
        }
        self.flush(idx);
    }

    /// Closes a connection and the one it is paired with; the slot is freed
    /// when no operation of it is in flight.
    fn close(&mut self, idx: usize) {
        let Some(conn) = self.conns[idx].as_mut() else {
            return;
        };
        if !conn.closed {
            conn.closed = true;
            // Ends the multishot receive (it completes with 0).
            // SAFETY: our own open descriptor.
            unsafe { libc::shutdown(conn.fd, libc::SHUT_RDWR) };
            let partner = match &mut conn.role {
                Role::Client { upstream, .. } => upstream.take(),
                Role::Upstream { client, .. } => client.take(),
            };
            self.idle.retain(|&i| i != idx);
            if let Some(p) = partner {
                self.close(p);
            }
        }
        // (The partner's close may have come back here and freed it.)
        let Some(conn) = self.conns[idx].as_mut() else {
            return;
        };
        if !conn.sending && !conn.receiving {
            // SAFETY: as above; nothing in flight names it any more.
            unsafe { libc::close(conn.fd) };
            let conn = self.conns[idx].take().unwrap();
            for (chunk, _) in conn.out {
                if let Chunk::Ring(bid, _) = chunk {
                    self.bufs.give_back(bid);
                }
            }
            self.free.push(idx);
        }
    }
}

fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: a valid option value of the right size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of_val(&one) as libc::socklen_t,
        )
    };
}
