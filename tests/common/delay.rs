//! A TCP proxy that delays every byte by a fixed one-way latency, in both
//! directions: a network with a round-trip time of twice that delay, for tests
//! and benchmarks on machines without `tc netem`; and a proxy that cuts or stalls
//! a link after a given number of bytes, for fault tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Listen on a free loopback port and hand every connection, with a fresh
/// connection of its own to `target`, to `forward`. Returns the proxy's address.
async fn spawn_proxy<F, Fut>(target: SocketAddr, forward: F) -> SocketAddr
where
    F: Fn(TcpStream, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let forward = Arc::new(forward);
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let forward = Arc::clone(&forward);
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(target).await else { return };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                forward(inbound, outbound).await;
            });
        }
    });
    addr
}

/// Listen on a free loopback port and forward every connection to `target`,
/// delaying each direction by `delay`. Returns the proxy's address.
pub async fn spawn_delay_proxy(target: SocketAddr, delay: Duration) -> SocketAddr {
    spawn_proxy(target, move |inbound, outbound| async move {
        let (ri, wi) = inbound.into_split();
        let (ro, wo) = outbound.into_split();
        tokio::spawn(pipe(ri, wo, delay));
        tokio::spawn(pipe(ro, wi, delay));
    })
    .await
}

/// Copy `from` to `to`, each chunk written `delay` after it was read (in order).
async fn pipe(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Listen on a free loopback port and forward every connection to `target`,
/// holding back only the first bytes the dialler sends by `hold`: a party that
/// is slow to join (queued, or busy dialling others), not a slow network.
pub async fn spawn_first_bytes_proxy(target: SocketAddr, hold: Duration) -> SocketAddr {
    spawn_proxy(target, move |inbound, outbound| async move {
        let (mut ri, mut wi) = inbound.into_split();
        let (mut ro, mut wo) = outbound.into_split();
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            let _ = tokio::io::copy(&mut ri, &mut wo).await;
            let _ = wo.shutdown().await;
        });
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut ro, &mut wi).await;
            let _ = wi.shutdown().await;
        });
    })
    .await
}

/// What a [`spawn_cut_proxy`] does once `after` bytes have gone towards the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Close both directions at once (a broken link).
    Close,
    /// Forward nothing more, but keep the connection open (a link that hangs).
    Stall,
}

/// Listen on a free loopback port and forward every connection to `target`;
/// after `after` bytes towards the target on one connection, cut or stall that
/// connection. Returns the proxy's address and a flag set when a connection was
/// cut or stalled.
pub async fn spawn_cut_proxy(target: SocketAddr, after: usize, cut: Cut) -> (SocketAddr, Arc<AtomicBool>) {
    let tripped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&tripped);
    let addr = spawn_proxy(target, move |inbound, outbound| {
        let flag = Arc::clone(&flag);
        async move {
            let (mut ri, mut wi) = inbound.into_split();
            let (mut ro, mut wo) = outbound.into_split();
            let back = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut ro, &mut wi).await;
                let _ = wi.shutdown().await;
            });
            let mut sent = 0usize;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = match ri.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let keep = n.min(after.saturating_sub(sent));
                if keep > 0 && wo.write_all(&buf[..keep]).await.is_err() {
                    break;
                }
                sent += keep;
                if sent >= after {
                    flag.store(true, Ordering::SeqCst);
                    if cut == Cut::Close {
                        back.abort();
                        return;
                    }
                }
            }
            // The sender closed (or the target did): pass that on.
            let _ = wo.shutdown().await;
            back.abort();
        }
    })
    .await;
    (addr, tripped)
}
