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
//! bytes costs 10 bytes), in one buffer that is never copied.

// The no-panic, checked-arithmetic lints of `transport/mod.rs` hold here.

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
            Frame::Message { key, payload } => [&message_header(key)[..], payload].concat(),
            Frame::Control(json) => [&[CONTROL][..], json].concat(),
            Frame::Abort(reason) => [&[ABORT][..], reason.as_bytes()].concat(),
            Frame::Ping => vec![PING],
        }
    }

    /// Parse a frame's body.
    pub fn decode(mut body: Vec<u8>) -> Result<Frame> {
        let Some(&kind) = body.first() else { bail!("empty frame") };
        if kind != MESSAGE {
            return decode_rest(kind, body.split_off(1));
        }
        let header: Option<[u8; MESSAGE_HEADER - 1]> = body.get(1..MESSAGE_HEADER).and_then(|h| h.try_into().ok());
        let Some(h) = header else {
            bail!("message frame of {} bytes is shorter than its {MESSAGE_HEADER}-byte header", body.len());
        };
        Ok(Frame::Message { key: key_of(h), payload: body.split_off(MESSAGE_HEADER) })
    }
}

/// Read one frame; `None` at a clean end of stream (between frames).
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Option<Frame>> {
    match read_len(r, max).await? {
        Some(len) => read_body(r, len).await.map(Some),
        None => Ok(None),
    }
}

/// Read a frame's length (at most `max`); `None` at a clean end of stream.
pub async fn read_len<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Option<usize>> {
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
        // `read` fills at most `rest`, so this stays at most 4.
        got = got.saturating_add(n);
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        bail!("frame of {len} bytes exceeds the limit of {max} bytes");
    }
    Ok(Some(len))
}

/// A frame's buffer starts at this, and doubles while it fills, up to
/// [`TRUSTED`].
const FIRST: usize = 1 << 16;
/// Once this much of a frame has come, its buffer takes the frame's whole size
/// at once (pages the kernel only backs as bytes are written into them).
/// Before, it grows with what came, so that a sender that announces 1 GiB and
/// sends 10 bytes costs 64 KiB; after, it never grows again, because every
/// growth is a copy whose old buffer the allocator keeps (`read_to_end`'s
/// doubling made 256 MiB sent cost 647 MB).
const TRUSTED: usize = 4 << 20;

/// Read the body of a frame of `len` bytes (after its length).
///
/// A frame costs the bytes that came, once: the kind and a message's header
/// are read apart, and the payload into one buffer that grows as its bytes
/// arrive (doubling from 64 KiB to 4 MiB, then to exactly the frame's size),
/// never to more than the sender sent before it has sent 4 MiB, and is handed
/// on without a copy.
pub async fn read_body<R: AsyncRead + Unpin>(r: &mut R, len: usize) -> Result<Frame> {
    let mut got = 0;
    let mut kind = [0u8; 1];
    // The length is the peer's: what follows the kind and the header is
    // refused when the length is too short for them, never wrapped.
    let Some(after_kind) = len.checked_sub(1) else { bail!("empty frame") };
    read_exact(r, &mut kind, &mut got, len).await?;
    let [kind] = kind;
    if kind != MESSAGE {
        let rest = read_payload(r, after_kind, &mut got, len).await?;
        return decode_rest(kind, rest);
    }
    let Some(payload_len) = len.checked_sub(MESSAGE_HEADER) else {
        bail!("message frame of {len} bytes is shorter than its {MESSAGE_HEADER}-byte header");
    };
    let mut header = [0u8; MESSAGE_HEADER - 1];
    read_exact(r, &mut header, &mut got, len).await?;
    let payload = read_payload(r, payload_len, &mut got, len).await?;
    Ok(Frame::Message { key: key_of(header), payload })
}

/// Fill `buf`; `got` counts the frame's bytes read so far, of `len`.
async fn read_exact<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8], got: &mut usize, len: usize) -> Result<()> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        let n = r.read(rest).await?;
        if n == 0 {
            bail!("connection closed inside a frame ({got} of {len} bytes)");
        }
        // Bounded by `buf` and by the frame's length: saturating only to
        // keep the arithmetic panic-free.
        filled = filled.saturating_add(n);
        *got = got.saturating_add(n);
    }
    Ok(())
}

/// Read `n` bytes into a buffer of exactly that size, grown as they arrive.
async fn read_payload<R: AsyncRead + Unpin>(r: &mut R, n: usize, got: &mut usize, len: usize) -> Result<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    while out.len() < n {
        if out.len() == out.capacity() {
            let grown = match out.capacity() {
                c if c >= TRUSTED => n,
                c => c.saturating_mul(2).max(FIRST).min(n),
            };
            // Over `out.len()`: it equals the capacity, which is below `n`.
            out.try_reserve_exact(grown.saturating_sub(out.len()))?;
        }
        // Never past the frame: the next frame's bytes stay in the stream.
        let room = out.capacity().min(n).saturating_sub(out.len());
        let read = (&mut *r).take(room as u64).read_buf(&mut out).await?;
        if read == 0 {
            bail!("connection closed inside a frame ({got} of {len} bytes)");
        }
        *got = got.saturating_add(read);
    }
    Ok(out)
}

fn key_of(h: [u8; MESSAGE_HEADER - 1]) -> MsgKey {
    let [s0, s1, s2, s3, s4, s5, s6, s7, q0, q1, q2, q3, p0, p1, p2, p3, t0, t1, t2, t3] = h;
    MsgKey {
        session: u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
        seq: u32::from_le_bytes([q0, q1, q2, q3]),
        step: u32::from_le_bytes([p0, p1, p2, p3]),
        tag: u32::from_le_bytes([t0, t1, t2, t3]),
    }
}

/// A frame other than a message, from its kind and the bytes after it.
fn decode_rest(kind: u8, rest: Vec<u8>) -> Result<Frame> {
    match kind {
        CONTROL => Ok(Frame::Control(rest)),
        ABORT => match String::from_utf8(rest) {
            Ok(reason) => Ok(Frame::Abort(reason)),
            Err(_) => bail!("abort frame whose reason is not UTF-8"),
        },
        PING if rest.is_empty() => Ok(Frame::Ping),
        PING => bail!("keepalive frame with {} bytes of payload", rest.len()),
        other => bail!("unknown frame kind {other}"),
    }
}

/// A message's kind and key, as they precede its payload.
fn message_header(key: &MsgKey) -> [u8; MESSAGE_HEADER] {
    let mut h = [0u8; MESSAGE_HEADER];
    let fields = [&[MESSAGE][..], &key.session.to_le_bytes(), &key.seq.to_le_bytes(), &key.step.to_le_bytes()];
    let mut at: usize = 0;
    for field in fields.into_iter().chain([&key.tag.to_le_bytes()[..]]) {
        // At most MESSAGE_HEADER: the fields are fixed-size.
        let end = at.saturating_add(field.len());
        if let Some(place) = h.get_mut(at..end) {
            place.copy_from_slice(field);
        }
        at = end;
    }
    h
}

/// Write one frame (the caller flushes). A message's payload is written from
/// where it is, not copied into a frame first.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> Result<()> {
    let (head, body) = match frame {
        Frame::Message { key, payload } => (message_header(key).to_vec(), &payload[..]),
        other => (other.encode(), &[][..]),
    };
    let total = head.len().saturating_add(body.len());
    // A saturated total is over the limit too, and refused.
    let len = u32::try_from(total).ok().filter(|&l| l as usize <= MAX_FRAME);
    let Some(len) = len else { bail!("frame of {total} bytes exceeds the limit of {MAX_FRAME} bytes") };
    w.write_all(&len.to_le_bytes()).await?;
    w.write_all(&head).await?;
    w.write_all(body).await?;
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

    /// Frames read back to back from one stream: each payload is read whole,
    /// past the buffer's growth steps, and the next frame's bytes stay in the
    /// stream.
    #[tokio::test]
    async fn large_frames_are_read_whole_and_apart() {
        let big = Frame::Message { key: key(), payload: (0..(5 << 20) + 3).map(|i| i as u8).collect() };
        let frames = [big, Frame::Ping, Frame::Control(vec![b'{'; 70_000]), Frame::Abort("x".into())];
        let mut bytes = Vec::new();
        for frame in &frames {
            write_frame(&mut bytes, frame).await.unwrap();
        }
        let mut stream = &bytes[..];
        for frame in &frames {
            assert_eq!(read_frame(&mut stream, MAX_FRAME).await.unwrap().as_ref(), Some(frame));
        }
        assert!(read_frame(&mut stream, MAX_FRAME).await.unwrap().is_none());
        // A message cut inside its header, or a ping with a payload, is refused.
        let mut cut = &[10u8, 0, 0, 0, 0, 1, 2][..];
        let e = read_frame(&mut cut, MAX_FRAME).await.unwrap_err();
        assert!(e.to_string().contains("shorter than its 21-byte header"), "{e}");
        let mut ping = &[2u8, 0, 0, 0, 3, 0][..];
        assert!(read_frame(&mut ping, MAX_FRAME).await.unwrap_err().to_string().contains("keepalive frame with 1"));
    }

    proptest::proptest! {
        /// The network's reader (kind, header and payload apart) parses every
        /// body as `Frame::decode` (the fuzzed parser) does.
        #[test]
        fn the_stream_reader_agrees_with_decode(mut body in proptest::collection::vec(0u8..=255, 0..64), kind in 0u8..5) {
            if let Some(first) = body.first_mut() {
                *first = kind;
            }
            let mut bytes = (body.len() as u32).to_le_bytes().to_vec();
            bytes.extend_from_slice(&body);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let read = rt.block_on(read_frame(&mut &bytes[..], MAX_FRAME));
            match (read, Frame::decode(body)) {
                (Ok(Some(a)), Ok(b)) => proptest::prop_assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                (a, b) => proptest::prop_assert!(false, "read {a:?}, decoded {b:?}"),
            }
        }
    }
}
