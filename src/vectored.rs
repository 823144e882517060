//! The one vectored-write loop, shared by the two places that write to
//! sockets: the server writing answers (`server/write.rs`) and the upstream
//! client writing requests (`upstream/mod.rs`). Both hand a head and body
//! slices to one `writev` at a time, however the kernel splits them.

use std::io::{self, IoSlice};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Write every byte of `bufs`, however the kernel splits the writes; an
/// empty write of a non-empty rest is `WriteZero`.
pub async fn write_all<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut bufs: &mut [IoSlice<'_>],
) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let n = w.write_vectored(bufs).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}
