//! What the other end of a connection speaks, TLS or tfe-run's plain frames,
//! told from its first bytes, so that a party run with `--insecure` and one
//! run with TLS name the mismatch instead of misreading each other's bytes
//! ("connection closed inside a frame (3 of 197397 bytes)" was a TLS alert
//! read as a frame's length).
//!
//! Each side recognises the other's language where it expected its own:
//!
//! - a plaintext listener, a TLS ClientHello where a hello frame should start
//!   ([`client_hello`]); it answers with a refusal frame, which the TLS peer's
//!   rustls then reports as a corrupt record ([`is_not_tls`]);
//! - a TLS listener, rustls's corrupt-record error for a plain frame
//!   ([`is_not_tls`]); rustls answers with a TLS alert;
//! - a plaintext dialler, that alert where the first frame should start
//!   ([`Plain`], [`tls_alert`]);
//! - a TLS dialler, the corrupt-record error for the plain refusal.
//!
//! A first frame of ours cannot be taken for TLS: a hello, ready or refusal
//! is a control frame (kind 1, then JSON's `{`), a keepalive is 5 bytes, a
//! message's kind is 0. The patterns below need the byte after a TLS record's
//! header (the handshake type 1, or an alert's level 1 or 2), where our
//! frames have their kind or `{`.

// The no-panic, checked-arithmetic lints of `transport/mod.rs` hold here.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::Party;

/// A TLS record's content types: alert and handshake.
const ALERT: u8 = 0x15;
const HANDSHAKE: u8 = 0x16;
/// The bytes that decide: a record header (5) and the first byte of its body.
const DECIDING: usize = 6;

/// Is `head`, the first bytes a listener received, a TLS ClientHello? `None`
/// while they are too few to tell (they could still be one).
///
/// A ClientHello record: handshake (22), version 3.x, a 2-byte length, then
/// the handshake type ClientHello (1).
pub fn client_hello(head: &[u8]) -> Option<bool> {
    matches(head, |at, b| match at {
        0 => b == HANDSHAKE,
        1 => b == 3,
        2 => b <= 4,
        5 => b == 1,
        _ => true,
    })
}

/// Is `head`, the first bytes a dialler received, a TLS alert record (what a
/// TLS listener sends before it closes a handshake it cannot go on with)?
/// `None` while they are too few to tell.
///
/// An alert record: alert (21), version 3.x, length 2, then the level:
/// warning (1) or fatal (2).
pub fn tls_alert(head: &[u8]) -> Option<bool> {
    matches(head, |at, b| match at {
        0 => b == ALERT,
        1 => b == 3,
        2 => b <= 4,
        3 => b == 0,
        4 => b == 2,
        5 => b == 1 || b == 2,
        _ => true,
    })
}

/// `Some(false)` as soon as a byte of `head` breaks the pattern, `Some(true)`
/// when the deciding bytes all fit it, `None` before.
fn matches(head: &[u8], fits: impl Fn(usize, u8) -> bool) -> Option<bool> {
    if head.iter().take(DECIDING).enumerate().any(|(at, &b)| !fits(at, b)) {
        return Some(false);
    }
    (head.len() >= DECIDING).then_some(true)
}

/// Is this failed TLS handshake a peer that does not speak TLS? rustls reports
/// bytes that are no TLS record (a plain frame's length where a record header
/// should be) as a corrupt message.
pub fn is_not_tls(err: &io::Error) -> bool {
    matches!(err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()), Some(rustls::Error::InvalidMessage(_)))
}

/// What to run instead, said by every mismatch message.
const REMEDY: &str = "run every party with TLS (--certs DIR) or every party with --insecure";

/// `local`, which runs with `--insecure`, dialled `peer` at `address`, which
/// answered in TLS.
pub fn peer_speaks_tls(peer: Party, address: &str, local: Party) -> String {
    format!("{} at {address} uses TLS, but this {} runs with --insecure: {REMEDY}", peer.name(), local.name())
}

/// `local`, which uses TLS, dialled `peer` at `address`, which answered in
/// plain frames (or not as tfe-run at all).
pub fn peer_speaks_plaintext(peer: Party, address: &str, local: Party) -> String {
    format!(
        "{} at {address} does not speak TLS (it runs with --insecure, or is not a tfe-run party), but this {} uses \
         TLS: {REMEDY}",
        peer.name(),
        local.name()
    )
}

/// What a TLS listener logs (after its party's name) about a peer whose bytes
/// are not TLS.
pub fn plaintext_peer() -> String {
    format!(
        "the peer does not speak TLS (it runs with --insecure, or is not a tfe-run party), but this party uses TLS: \
         {REMEDY}"
    )
}

/// What a plaintext listener logs, and answers, to a TLS ClientHello.
pub fn tls_peer() -> String {
    format!("the peer speaks TLS (it sent a TLS ClientHello), but this party runs with --insecure: {REMEDY}")
}

/// The mismatch a [`Plain`] stream found, as its read error carries it.
#[derive(Debug)]
pub struct Mismatch(pub String);

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Mismatch {}

/// The mismatch somewhere in `err`'s chain, if a [`Plain`] stream found one.
pub fn mismatch_in(err: &anyhow::Error) -> Option<&Mismatch> {
    err.chain().find_map(|cause| match cause.downcast_ref::<io::Error>() {
        Some(io) => io.get_ref()?.downcast_ref::<Mismatch>(),
        None => cause.downcast_ref::<Mismatch>(),
    })
}

/// A plain (`--insecure`) stream to a dialled peer. It passes every byte on,
/// and watches the first ones: if they are a TLS alert, the read that
/// completes it fails with [`Mismatch`] instead, so that whoever reads the
/// first frame reports the mismatch and not a frame of 197397 bytes cut
/// short. Bytes are never held back: a frame of ours departs from the pattern
/// by its sixth byte at the latest, and from then on the stream is only a
/// pass-through.
pub struct Plain<S> {
    inner: S,
    head: [u8; DECIDING],
    seen: usize,
    /// `None` once the first bytes cannot be an alert.
    watching: Option<String>,
}

impl<S> Plain<S> {
    /// `mismatch` is what a TLS alert means here ([`peer_speaks_tls`]).
    pub fn new(inner: S, mismatch: String) -> Plain<S> {
        Plain { inner, head: [0; DECIDING], seen: 0, watching: Some(mismatch) }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Plain<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.watching.is_some() {
            let new = buf.filled().get(before..).unwrap_or_default();
            let room = this.head.get_mut(this.seen..).unwrap_or_default();
            let n = room.len().min(new.len());
            if let (Some(to), Some(from)) = (room.get_mut(..n), new.get(..n)) {
                to.copy_from_slice(from);
            }
            // At most DECIDING: `n` is at most the room left.
            this.seen = this.seen.saturating_add(n);
            match tls_alert(this.head.get(..this.seen).unwrap_or_default()) {
                Some(true) => {
                    let mismatch = this.watching.clone().unwrap_or_default();
                    return Poll::Ready(Err(io::Error::other(Mismatch(mismatch))));
                }
                Some(false) => this.watching = None,
                None => {}
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Plain<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How long a listener reads what a peer of the other language still sends
/// before it closes, at most: closing with unread bytes would make the kernel
/// reset the connection and drop the answer (our refusal, rustls's alert)
/// before the peer reads it. Well within `--handshake-timeout`.
const DRAIN: Duration = Duration::from_millis(500);
/// A drain stops earlier once the peer has sent nothing for this long.
const QUIET: Duration = Duration::from_millis(100);

/// Read and drop what the peer sends until it closes, is quiet for a moment,
/// or [`DRAIN`] has passed.
pub async fn drain<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(DRAIN, async {
        while let Ok(Ok(n)) = tokio::time::timeout(QUIET, stream.read(&mut buf)).await {
            if n == 0 {
                return;
            }
        }
    })
    .await;
}

/// Answer a peer that spoke the other language with `answer` (bytes in its
/// language or ours), then close without resetting the connection.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, answer: &[u8]) {
    drain(stream).await;
    answer_and_close(stream, answer).await;
}

/// Send `answer` (a refusal) and close, reading what the peer still sends
/// meanwhile (a lingering close): a peer that sent ahead of our answer, such
/// as a client whose input shares follow its hello, must read the answer, not
/// a reset that discarded it.
pub async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, answer: &[u8]) {
    if !answer.is_empty() {
        let _ = stream.write_all(answer).await;
    }
    let _ = stream.shutdown().await;
    drain(stream).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::wire::{Frame, write_frame};

    /// The first bytes of every kind of first frame of ours, at lengths that
    /// put a TLS content type and version in the length's bytes.
    async fn our_first_frames() -> Vec<Vec<u8>> {
        let mut heads = Vec::new();
        for len in [0x0315usize, 0x0316, 0x0001_0316, 0x0004_0315, 100] {
            for frame in [Frame::Control(vec![b'{'; len.saturating_sub(1)]), Frame::Abort("x".repeat(len - 1))] {
                let mut bytes = Vec::new();
                write_frame(&mut bytes, &frame).await.unwrap();
                heads.push(bytes[..DECIDING].to_vec());
            }
        }
        let mut ping = Vec::new();
        write_frame(&mut ping, &Frame::Ping).await.unwrap();
        heads.push(ping);
        heads
    }

    #[tokio::test]
    async fn no_first_frame_of_ours_is_taken_for_tls() {
        for head in our_first_frames().await {
            assert_eq!(client_hello(&head), Some(false), "{head:x?}");
            assert_eq!(tls_alert(&head), Some(false), "{head:x?}");
        }
    }

    #[test]
    fn tls_records_are_recognised_once_their_deciding_bytes_came() {
        // rustls's fatal decode_error alert (the "frame of 197397 bytes"), and
        // the start of a TLS 1.3 ClientHello.
        let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];
        let hello = [0x16, 0x03, 0x01, 0x05, 0xdc, 0x01, 0x00];
        assert_eq!(tls_alert(&alert), Some(true));
        assert_eq!(client_hello(&hello), Some(true));
        assert_eq!(tls_alert(&alert[..5]), None);
        assert_eq!(client_hello(&hello[..2]), None);
        assert_eq!(tls_alert(&hello), Some(false));
        assert_eq!(client_hello(&alert), Some(false));
        assert_eq!(tls_alert(&[]), None);
    }

    /// A plain stream turns an alert arriving a byte at a time into the
    /// mismatch, and passes our own frames through untouched.
    #[tokio::test]
    async fn a_plain_stream_names_a_tls_alert_and_passes_frames_on() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut plain = Plain::new(ours, "server1 uses TLS".to_string());
        for b in [0x15u8, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32] {
            theirs.write_all(&[b]).await.unwrap();
        }
        let mut buf = [0u8; 1];
        let e = loop {
            match plain.read(&mut buf).await {
                Ok(_) => continue,
                Err(e) => break anyhow::Error::from(e),
            }
        };
        assert_eq!(mismatch_in(&e).map(|m| m.0.as_str()), Some("server1 uses TLS"));

        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let mut plain = Plain::new(ours, String::new());
        let frame = Frame::Abort("x".repeat(0x0314));
        write_frame(&mut theirs, &frame).await.unwrap();
        let read = crate::transport::wire::read_frame(&mut plain, 1 << 20).await.unwrap();
        assert_eq!(read, Some(frame));
    }

    /// Regression (a_redeploy_racing_predictions_never_mixes_deployments
    /// printed "sending to server1 failed: Broken pipe"): a server refused a
    /// client whose input shares followed its hello, and closed with them
    /// unread; the kernel reset the connection and the refusal was lost. The
    /// peer that is still sending must be able to send all of it and then read
    /// the answer and a clean end, not a reset.
    #[tokio::test]
    async fn a_refused_peer_still_sending_reads_the_refusal_not_a_reset() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            // Far more than the socket buffers hold: the server has unread bytes
            // when it answers.
            let sent = stream.write_all(&vec![7u8; 8 << 20]).await;
            let _ = stream.shutdown().await;
            let mut answer = Vec::new();
            let read = stream.read_to_end(&mut answer).await;
            (sent.map_err(|e| e.kind()), read.map_err(|e| e.kind()), answer)
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 100];
        stream.read_exact(&mut hello).await.unwrap();
        answer_and_close(&mut stream, b"refused").await;
        drop(stream);
        let (sent, read, answer) = peer.await.unwrap();
        assert_eq!(sent, Ok(()));
        assert_eq!(read, Ok(7));
        assert_eq!(answer, b"refused");
    }
}
