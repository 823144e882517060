//! An upstream body passed on byte for byte (speech audio, transcripts as
//! text): no events to re-frame, each piece written as it is read.

use bytes::Bytes;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::sse::encode::StreamItem;
use crate::upstream::UpstreamResponse;

/// An upstream body passed on byte for byte as it arrives (speech audio,
/// transcripts): each piece is written the moment it is read. A body that
/// breaks off, or stalls for longer than `streamIdleTimeout`, ends the
/// client's answer without its last chunk, so that the client sees it cut.
pub struct ByteStream {
    response: UpstreamResponse,
    idle_timeout: Duration,
    /// When the upstream last sent a byte: the idle timeout counts from
    /// it, however often the wait is dropped and begun again.
    heard: Instant,
    /// The piece read before the answer began.
    first: Option<Bytes>,
    ended: bool,
    failed: bool,
}

impl ByteStream {
    /// `response`'s body, `first` its piece already read; a silence longer
    /// than `idle_timeout` fails it.
    pub fn new(response: UpstreamResponse, idle_timeout: Duration, first: Bytes) -> ByteStream {
        ByteStream {
            response,
            idle_timeout,
            heard: Instant::now(),
            first: Some(first),
            ended: false,
            failed: false,
        }
    }

    /// Cancel-safe: the only await is `UpstreamResponse::data`, itself
    /// cancel-safe, and the deadline does not move when it is dropped.
    pub async fn next(&mut self) -> Option<StreamItem> {
        if let Some(first) = self.first.take() {
            return Some(StreamItem::Raw(first));
        }
        while !self.ended {
            let idle_at = self.heard + self.idle_timeout;
            let piece = tokio::time::timeout_at(idle_at.into(), self.response.data()).await;
            match piece {
                Ok(Ok(Some(piece))) if piece.is_empty() => {}
                Ok(Ok(Some(piece))) => {
                    self.heard = Instant::now();
                    return Some(StreamItem::Raw(piece));
                }
                Ok(Ok(None)) => self.ended = true,
                Ok(Err(_)) | Err(_) => self.fail(),
            }
        }
        None
    }

    /// The next piece if it is already here; never waits.
    pub fn next_ready(&mut self) -> Option<StreamItem> {
        if let Some(first) = self.first.take() {
            return Some(StreamItem::Raw(first));
        }
        while !self.ended {
            match self.response.try_data() {
                Poll::Ready(Ok(Some(piece))) if piece.is_empty() => {}
                Poll::Ready(Ok(Some(piece))) => {
                    self.heard = Instant::now();
                    return Some(StreamItem::Raw(piece));
                }
                Poll::Ready(Ok(None)) => self.ended = true,
                Poll::Ready(Err(_)) => self.fail(),
                Poll::Pending => return None,
            }
        }
        None
    }

    fn fail(&mut self) {
        self.ended = true;
        self.failed = true;
    }

    /// True once the body ended, whole or not.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The body ended and was whole.
    pub fn completed(&self) -> bool {
        self.ended && !self.failed
    }

    /// The body broke off.
    pub fn failed(&self) -> bool {
        self.failed
    }
}
