//! The relay on tokio's current-thread runtime (epoll), as each chat2api
//! worker runs: one task per client connection, a pool of idle upstream
//! connections, every upstream read written to the client as it arrives.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::http::{request_len, Answer};
use crate::READ_SIZE;

type Pool = Rc<RefCell<Vec<TcpStream>>>;

pub fn run(listener: std::net::TcpListener, upstream: SocketAddr) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let pool: Pool = Rc::default();
        loop {
            let (client, _) = listener.accept().await?;
            client.set_nodelay(true)?;
            let pool = pool.clone();
            tokio::task::spawn_local(async move {
                let _ = serve(client, pool, upstream).await;
            });
        }
    })
}

async fn serve(mut client: TcpStream, pool: Pool, upstream: SocketAddr) -> io::Result<()> {
    let mut req = Vec::with_capacity(READ_SIZE);
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        let n = loop {
            if let Some(n) = request_len(&req)? {
                break n;
            }
            if client.read_buf(&mut req).await? == 0 {
                return Ok(());
            }
        };
        let pooled = pool.borrow_mut().pop();
        let mut up = match pooled {
            Some(up) => up,
            None => {
                let up = TcpStream::connect(upstream).await?;
                up.set_nodelay(true)?;
                up
            }
        };
        up.write_all(&req[..n]).await?;
        req.drain(..n);
        let mut answer = Answer::default();
        loop {
            let got = up.read(&mut buf).await?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            client.write_all(&buf[..got]).await?;
            if answer.feed(&buf[..got])? {
                break;
            }
        }
        pool.borrow_mut().push(up);
    }
}
