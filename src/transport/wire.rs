//! Frames between hosts, inside TLS: a 4-byte little-endian length, then a body
//! whose first byte says what it is.
//!
//! ```text
//! body = 0 | session u64 | seq u32 | step u32 | tag u32 | payload     a protocol message
//!      = 1 | JSON                                                      a session control message
//!      = 2 | UTF-8 reason                                              "I stopped, and why"
//!      = 3                                                             "I am alive" (keepalive)
//! ```
//!
//! The decoder trusts nothing: a length over the limit, a short body, an unknown
//! kind or a reason that is not UTF-8 is an error, never a panic, and a frame is
//! only buffered as its bytes arrive (a peer that announces 1 GiB and sends 10
//! bytes costs 10 bytes).

// Parses bytes from others: nothing here may panic on what they send.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

use anyhow::{Result, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::MsgKey;

/// The largest frame accepted: far above any message of the shipped models (the
/// largest, an activation of a batch of 100, is about 15 MB) and far below memory.
pub const MAX_FRAME: usize = 1 << 30;

const MESSAGE: u8 = 0;
const CONTROL: u8 = 1;
const ABORT: u8 = 2;
const PING: u8 = 3;
const MESSAGE_HEADER: usize = 1 + 8 + 4 + 4 + 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A protocol message (to and from are the connection's two ends).
    Message { key: MsgKey, payload: Vec<u8> },
    /// A session control message (JSON; see `remote`).
    Control(Vec<u8>),
    /// The sender's work in the session failed; no more messages will come.
    Abort(String),
    /// Sent when a connection is otherwise idle: the peer is alive, only busy.
    Ping,
}

impl Frame {
    /// The frame's body (everything after the length).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Message { key, payload } => {
                let mut out = Vec::with_capacity(MESSAGE_HEADER + payload.len());
                out.push(MESSAGE);
                out.extend_from_slice(&key.session.to_le_bytes());
                out.extend_from_slice(&key.seq.to_le_bytes());
                out.extend_from_slice(&key.step.to_le_bytes());
                out.extend_from_slice(&key.tag.to_le_bytes());
                out.extend_from_slice(payload);
                out
            }
            Frame::Control(json) => [&[CONTROL][..], json].concat(),
            Frame::Abort(reason) => [&[ABORT][..], reason.as_bytes()].concat(),
            Frame::Ping => vec![PING],
        }
    }

    /// Parse a frame's body.
    pub fn decode(mut body: Vec<u8>) -> Result<Frame> {
        let Some(&kind) = body.first() else { bail!("empty frame") };
        match kind {
            MESSAGE => {
                let header: Option<[u8; MESSAGE_HEADER]> = body.get(..MESSAGE_HEADER).and_then(|h| h.try_into().ok());
                let Some(h) = header else {
                    bail!("message frame of {} bytes is shorter than its {MESSAGE_HEADER}-byte header", body.len());
                };
                let [_, s0, s1, s2, s3, s4, s5, s6, s7, q0, q1, q2, q3, p0, p1, p2, p3, t0, t1, t2, t3] = h;
                let key = MsgKey {
                    session: u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
                    seq: u32::from_le_bytes([q0, q1, q2, q3]),
                    step: u32::from_le_bytes([p0, p1, p2, p3]),
                    tag: u32::from_le_bytes([t0, t1, t2, t3]),
                };
                let payload = body.split_off(MESSAGE_HEADER);
                Ok(Frame::Message { key, payload })
            }
            CONTROL => Ok(Frame::Control(body.split_off(1))),
            ABORT => match String::from_utf8(body.split_off(1)) {
                Ok(reason) => Ok(Frame::Abort(reason)),
                Err(_) => bail!("abort frame whose reason is not UTF-8"),
            },
            PING if body.len() == 1 => Ok(Frame::Ping),
            PING => bail!("keepalive frame with {} bytes of payload", body.len() - 1),
            other => bail!("unknown frame kind {other}"),
        }
    }
}

/// Read one frame; `None` at a clean end of stream (between frames).
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Option<Frame>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while let Some(rest) = len.get_mut(got..).filter(|r| !r.is_empty()) {
        let n = r.read(rest).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            bail!("connection closed inside a frame's length");
        }
        got += n;
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        bail!("frame of {len} bytes exceeds the limit of {max} bytes");
    }
    let mut body = Vec::with_capacity(len.min(1 << 16));
    r.take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        bail!("connection closed inside a frame ({} of {len} bytes)", body.len());
    }
    Frame::decode(body).map(Some)
}

/// Write one frame (the caller flushes).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> Result<()> {
    let body = frame.encode();
    let len = u32::try_from(body.len()).ok().filter(|&l| l as usize <= MAX_FRAME);
    let Some(len) = len else { bail!("frame of {} bytes exceeds the limit of {MAX_FRAME} bytes", body.len()) };
    w.write_all(&len.to_le_bytes()).await?;
    w.write_all(&body).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MsgKey {
        MsgKey { session: 0x0102_0304_0506_0708, seq: 9, step: u32::MAX, tag: 7 }
    }

    #[test]
    fn frames_round_trip() {
        for frame in [
            Frame::Message { key: key(), payload: vec![1, 2, 3] },
            Frame::Message { key: key(), payload: vec![] },
            Frame::Control(b"{\"a\":1}".to_vec()),
            Frame::Abort("server1 failed".into()),
            Frame::Ping,
        ] {
            assert_eq!(Frame::decode(frame.encode()).unwrap(), frame);
        }
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(Frame::decode(vec![]).is_err());
        assert!(Frame::decode(vec![0, 1, 2]).is_err());
        assert!(Frame::decode(vec![9]).unwrap_err().to_string().contains("unknown frame kind 9"));
        assert!(Frame::decode(vec![2, 0xff, 0xfe]).is_err());
    }

    #[tokio::test]
    async fn reader_refuses_oversized_and_truncated_frames() {
        let mut big = &((MAX_FRAME as u32 + 1).to_le_bytes())[..];
        let e = read_frame(&mut big, MAX_FRAME).await.unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
        let mut short = &[10u8, 0, 0, 0, 1, 2][..];
        let e = read_frame(&mut short, MAX_FRAME).await.unwrap_err();
        assert!(e.to_string().contains("2 of 10 bytes"), "{e}");
        let mut half_len = &[10u8, 0][..];
        assert!(read_frame(&mut half_len, MAX_FRAME).await.is_err());
        let mut empty = &[][..];
        assert!(read_frame(&mut empty, MAX_FRAME).await.unwrap().is_none());
    }
}
