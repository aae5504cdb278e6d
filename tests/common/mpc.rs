//! A harness to run protocol primitives between two servers and the dealer, as
//! three threads over the in-process transport, with every message each party
//! receives recorded.
//!
//! Included by the tests that need it with `#[path = "common/mpc.rs"] mod mpc;`
//! (it is not part of `common/mod.rs`).
//!
//! * [`run`] splits plaintext ring tensors into random additive shares (x0 uniform,
//!   x1 = x − x0), runs the server half in server0 and server1 and the dealer half
//!   in the dealer, and returns the reconstructed outputs (share0 + share1) with the
//!   transcript.
//! * [`run_shares`] does the same with shares the caller chose (to test how a
//!   primitive behaves for particular splits, e.g. at a carry boundary).
//! * [`Recording`] wraps [`InProcess`] and logs each payload as it is received, so a
//!   test can inspect exactly what each server saw.
//! * [`chi2_uniform`] / [`chi2_homogeneity`] are the statistics for the view tests.
#![allow(dead_code)]

use std::num::Wrapping;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use ndarray::{ArrayD, IxDyn};

use tfe_run::protocol::{Dealer, Server};
use tfe_run::ring::{Prg, RingTensor, StreamKey, os_seed};
use tfe_run::transport::{Aborted, Endpoint, InProcess, MsgKey, Party, Transport};

/// One message as its receiver got it.
#[derive(Debug, Clone)]
pub struct Message {
    pub from: Party,
    pub to: Party,
    pub key: MsgKey,
    pub payload: Vec<u8>,
}

impl Message {
    /// The payload as little-endian 64-bit words (the wire format of ring elements).
    pub fn words(&self) -> Vec<u64> {
        self.payload.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
    }
}

/// The in-process transport, logging every payload a party receives (and,
/// separately, every payload a party sends).
#[derive(Default)]
pub struct Recording {
    inner: InProcess,
    log: Mutex<Vec<Message>>,
    sent: Mutex<Vec<Message>>,
    aborts: Mutex<Vec<String>>,
}

impl Recording {
    pub fn new() -> Recording {
        Recording::default()
    }

    /// Everything received so far, in the order it was received.
    pub fn transcript(&self) -> Vec<Message> {
        self.log.lock().expect("log").clone()
    }

    /// Everything sent so far, in the order it was sent.
    pub fn sent(&self) -> Vec<Message> {
        self.sent.lock().expect("log").clone()
    }

    /// Every abort reason a failing party gave the others.
    pub fn aborts(&self) -> Vec<String> {
        self.aborts.lock().expect("log").clone()
    }
}

impl Transport for Recording {
    fn send(&self, from: Party, to: Party, key: MsgKey, payload: Vec<u8>) -> Result<()> {
        self.sent.lock().expect("log").push(Message { from, to, key, payload: payload.clone() });
        self.inner.send(from, to, key, payload)
    }

    fn recv(&self, to: Party, from: Party, key: MsgKey, timeout: Duration) -> Result<Vec<u8>> {
        let payload = self.inner.recv(to, from, key, timeout)?;
        self.log.lock().expect("log").push(Message { from, to, key, payload: payload.clone() });
        Ok(payload)
    }

    fn abort(&self, reason: String) {
        self.aborts.lock().expect("log").push(reason.clone());
        self.inner.abort(reason)
    }
}

/// The randomness of one run: the two servers' seeds (the dealer holds both), the
/// seed the input shares are split with, and the session number.
#[derive(Debug, Clone)]
pub struct Keys {
    pub seeds: [[u8; 32]; 2],
    pub split: [u8; 32],
    pub session: u64,
}

impl Keys {
    /// Fresh keys from the operating system, as the runtime draws them.
    pub fn fresh() -> Keys {
        let split = os_seed().expect("os seed");
        Keys {
            seeds: [os_seed().expect("os seed"), os_seed().expect("os seed")],
            split,
            session: u64::from_le_bytes(split[..8].try_into().expect("8 bytes")),
        }
    }

    /// Reproducible keys: pseudorandom, but a function of `label` and the test
    /// seed (for statistical tests, so that a verdict does not change from run to
    /// run, and a failure can be replayed).
    pub fn fixed(label: u64) -> Keys {
        let mut prg = labelled(&test_seed(), label);
        let mut seed = || -> [u8; 32] {
            let w = prg.words(4);
            let mut s = [0u8; 32];
            for (chunk, w) in s.chunks_exact_mut(8).zip(w) {
                chunk.copy_from_slice(&w.to_le_bytes());
            }
            s
        };
        let (s0, s1, split) = (seed(), seed(), seed());
        Keys { seeds: [s0, s1], split, session: label }
    }
}

/// The outcome of a run: the reconstructed outputs, each server's output shares,
/// everything every party received (`transcript`) and sent (`sent`).
pub struct Run {
    pub outputs: Vec<RingTensor>,
    pub shares: [Vec<RingTensor>; 2],
    pub transcript: Vec<Message>,
    pub sent: Vec<Message>,
}

impl Run {
    /// The single output of a one-output run.
    pub fn output(&self) -> &RingTensor {
        assert_eq!(self.outputs.len(), 1, "one output");
        &self.outputs[0]
    }

    /// Words server `to` received from `from`, concatenated in receiving order.
    pub fn words(&self, to: Party, from: Party) -> Vec<u64> {
        self.messages(to, from).flat_map(|m| m.words()).collect()
    }

    pub fn messages(&self, to: Party, from: Party) -> impl Iterator<Item = &Message> {
        self.transcript.iter().filter(move |m| m.to == to && m.from == from)
    }

    /// The message `from` sent to `to` under `key`, if any.
    pub fn sent_message(&self, from: Party, to: Party, key: MsgKey) -> Option<&Message> {
        self.sent.iter().find(|m| m.from == from && m.to == to && m.key == key)
    }
}

/// The seed of the statistical tests' own randomness (their keys and random
/// inputs; the runtime still draws its own from the OS). Fixed by default, so a
/// verdict does not change from run to run; `TFE_TEST_SEED=N` replays or
/// explores another. Printed at every use, so the captured output of a failing
/// test says which seed it ran with.
pub fn test_seed() -> [u8; 32] {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let n = *SEED.get_or_init(|| match std::env::var("TFE_TEST_SEED") {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("TFE_TEST_SEED={v}: not a decimal u64")),
        Err(_) => DEFAULT_TEST_SEED,
    });
    eprintln!("the test's own randomness: TFE_TEST_SEED={n} (set it to replay)");
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    seed
}

/// The test seed when `TFE_TEST_SEED` is not set.
pub const DEFAULT_TEST_SEED: u64 = 0x5a5a_5a5a;

/// A test's own pseudorandom stream: stream `label` of `seed` (domain 0, which
/// the protocol does not use).
pub fn labelled(seed: &[u8; 32], label: u64) -> Prg {
    Prg::derive(seed, StreamKey { domain: 0, seq: (label >> 32) as u32, id: label as u32, tag: 0 })
}

/// Additive shares of `x`: x0 uniform from `prg`, x1 = x − x0.
pub fn split(x: &RingTensor, prg: &mut Prg) -> (RingTensor, RingTensor) {
    let x0 = prg.tensor(x.shape());
    let x1 = x - &x0;
    (x0, x1)
}

/// Run a primitive on plaintext inputs: split each into random shares, run the
/// server half on both servers and the dealer half on the dealer (after
/// `begin(1, 0)` on all three), and reconstruct the outputs.
pub fn run<S, D>(keys: &Keys, inputs: &[RingTensor], server: S, dealer: D) -> Run
where
    S: Fn(&mut Server, Vec<RingTensor>) -> Result<Vec<RingTensor>> + Sync,
    D: FnOnce(&mut Dealer) -> Result<()> + Send,
{
    let mut prg = labelled(&keys.split, 0);
    let (s0, s1): (Vec<_>, Vec<_>) = inputs.iter().map(|x| split(x, &mut prg)).unzip();
    run_shares(keys, [s0, s1], server, dealer)
}

/// One input, one output.
pub fn run1<S, D>(keys: &Keys, x: &RingTensor, server: S, dealer: D) -> Run
where
    S: Fn(&mut Server, RingTensor) -> Result<RingTensor> + Sync,
    D: FnOnce(&mut Dealer) -> Result<()> + Send,
{
    run(keys, std::slice::from_ref(x), |s, mut xs| Ok(vec![server(s, xs.remove(0))?]), dealer)
}

/// Run a primitive on the given shares (server i gets `shares[i]`).
pub fn run_shares<S, D>(keys: &Keys, shares: [Vec<RingTensor>; 2], server: S, dealer: D) -> Run
where
    S: Fn(&mut Server, Vec<RingTensor>) -> Result<Vec<RingTensor>> + Sync,
    D: FnOnce(&mut Dealer) -> Result<()> + Send,
{
    let transport = Arc::new(Recording::new());
    let dyn_transport: Arc<dyn Transport> = transport.clone();
    let endpoint = |p: Party| Endpoint::new(p, Arc::clone(&dyn_transport), keys.session, Duration::from_secs(30));
    let [shares0, shares1] = shares;
    let server = &server;
    let (r0, r1, rd) = std::thread::scope(|scope| {
        let spawn_server = |i: usize, mine: Vec<RingTensor>| {
            let mut s = Server::new(i, endpoint(Party::server(i)), keys.seeds[i]);
            let t = &transport;
            scope.spawn(move || {
                s.begin(1, 0);
                guarded(t.as_ref(), &format!("server{i}"), || server(&mut s, mine))
            })
        };
        let h0 = spawn_server(0, shares0);
        let h1 = spawn_server(1, shares1);
        let mut d = Dealer::new(endpoint(Party::Dealer), keys.seeds);
        let t = &transport;
        let hd = scope.spawn(move || {
            d.begin(1, 0);
            guarded(t.as_ref(), "dealer", || dealer(&mut d))
        });
        (joined("server0", h0.join()), joined("server1", h1.join()), joined("dealer", hd.join()))
    });
    // Report the failure that caused the others, not the aborts it triggered.
    let errors: Vec<&anyhow::Error> =
        [r0.as_ref().err(), r1.as_ref().err(), rd.as_ref().err()].into_iter().flatten().collect();
    if let Some(&first) = errors.first() {
        let root = errors.iter().find(|e| !e.chain().any(|c| c.is::<Aborted>())).copied().unwrap_or(first);
        panic!("the protocol failed: {root:#}");
    }
    let (o0, o1) = (r0.expect("ok"), r1.expect("ok"));
    assert_eq!(o0.len(), o1.len(), "both servers return as many outputs");
    let outputs = o0.iter().zip(&o1).map(|(a, b)| a + b).collect();
    Run { outputs, shares: [o0, o1], transcript: transport.transcript(), sent: transport.sent() }
}

/// Run a party's work; if it fails or panics, stop the other parties at once
/// (instead of letting them wait out their timeouts), then fail the same way.
pub fn guarded<T>(transport: &dyn Transport, name: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(r) => {
            if let Err(e) = &r {
                transport.abort(format!("{name} failed: {e:#}"));
            }
            r
        }
        Err(panic) => {
            transport.abort(format!("{name} panicked"));
            std::panic::resume_unwind(panic)
        }
    }
}

/// A party thread's result (a panic was already reported by [`guarded`]).
fn joined<T>(name: &str, r: std::thread::Result<T>) -> T {
    r.unwrap_or_else(|_| panic!("{name} panicked"))
}

/// A ring tensor from signed integers (two's complement).
pub fn ring(shape: &[usize], values: impl IntoIterator<Item = i64>) -> RingTensor {
    ArrayD::from_shape_vec(IxDyn(shape), values.into_iter().map(|v| Wrapping(v as u64)).collect()).expect("shape")
}

/// A ring tensor's elements as signed integers.
pub fn signed(t: &RingTensor) -> Vec<i64> {
    t.iter().map(|w| w.0 as i64).collect()
}

// ---- statistics ------------------------------------------------------------

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; ~15 digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, &g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularised upper incomplete gamma function Q(a, x) (Numerical Recipes:
/// series below a + 1, continued fraction above).
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let ln_front = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut term, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        1.0 - sum * ln_front.exp()
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        ln_front.exp() * h
    }
}

/// P(χ²_df ≥ stat).
pub fn chi2_sf(stat: f64, df: f64) -> f64 {
    gamma_q(df / 2.0, stat / 2.0)
}

/// Pearson's goodness-of-fit statistic of `counts` against equal cell
/// probabilities, and its p-value.
pub fn chi2_uniform(counts: &[u64]) -> (f64, f64) {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    let stat = counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum::<f64>();
    (stat, chi2_sf(stat, (counts.len() - 1) as f64))
}

/// The chi-square test that two histograms over the same cells come from one
/// distribution (a 2×K contingency table; empty cells dropped). Statistic, p-value.
pub fn chi2_homogeneity(a: &[u64], b: &[u64]) -> (f64, f64) {
    let (na, nb) = (a.iter().sum::<u64>() as f64, b.iter().sum::<u64>() as f64);
    let n = na + nb;
    let mut stat = 0.0;
    let mut cells = 0;
    for (&x, &y) in a.iter().zip(b) {
        let col = (x + y) as f64;
        if col == 0.0 {
            continue;
        }
        cells += 1;
        let (ea, eb) = (na * col / n, nb * col / n);
        stat += (x as f64 - ea).powi(2) / ea + (y as f64 - eb).powi(2) / eb;
    }
    (stat, chi2_sf(stat, (cells - 1).max(1) as f64))
}

/// Byte histogram of words (8 little-endian bytes each).
pub fn byte_histogram(words: &[u64]) -> Vec<u64> {
    let mut h = vec![0u64; 256];
    for w in words {
        for b in w.to_le_bytes() {
            h[b as usize] += 1;
        }
    }
    h
}

/// Histogram of the top 4 bits of each word.
pub fn top_nibble_histogram(words: &[u64]) -> Vec<u64> {
    let mut h = vec![0u64; 16];
    for w in words {
        h[(w >> 60) as usize] += 1;
    }
    h
}

/// For each bit position, how many words have it set; and the chi-square test (64
/// degrees of freedom) that every bit is a fair coin.
pub fn bit_balance(words: &[u64]) -> (Vec<u64>, f64) {
    let mut ones = vec![0u64; 64];
    for w in words {
        for (b, o) in ones.iter_mut().enumerate() {
            *o += (w >> b) & 1;
        }
    }
    let n = words.len() as f64;
    let stat = ones.iter().map(|&o| (o as f64 - n / 2.0).powi(2) / (n / 4.0)).sum::<f64>();
    (ones, chi2_sf(stat, 64.0))
}
