//! Truncation by 2^f after a fixed-point product, with the dealer's help.
//!
//! Escudero et al., "Improved Primitives for MPC over Mixed Arithmetic-Binary
//! Circuits" (CRYPTO 2020), probabilistic truncation with a mask of known MSB.
//! For z with |z| < 2^62, x = z + 2^62 lies in [0, 2^63). The dealer deals a uniform
//! r with shares of r' = (r mod 2^63) >> f and of its top bit r63. The servers open
//! c = x + r (uniform: it reveals nothing) and, writing c = c63·2^63 + c',
//!
//! ```text
//! x = c' − (r mod 2^63) + 2^63·(c63 ⊕ r63)        exactly, because x < 2^63,
//! x >> f ≈ (c' >> f) − r' + 2^(63−f)·(c63 + r63 − 2·c63·r63)
//! ```
//!
//! where the only error is the borrow between the two floors: at most one unit in
//! the last place. There is no failure probability at all for |z| < 2^62, unlike
//! SecureML's local truncation, which is wrong with probability ≈ |z|/2^64 per
//! element. Cost: one round, 8 bytes sent per element per server; the dealer sends
//! server 1 16 bytes per element.

use std::num::Wrapping;

use anyhow::Result;

use super::{Dealer, Server};
use crate::ring::{RingTensor, Z, from_words};
use crate::transport::WordWriter;

const LOW63: u64 = (1 << 63) - 1;

/// The largest shift: x = z + 2^62 is truncated to (x >> f) − 2^(62−f).
pub const MAX_SHIFT: u32 = 62;

/// A shift past [`MAX_SHIFT`] would wrap the constants above into garbage.
fn check_shift(f: u32) -> Result<()> {
    if f > MAX_SHIFT {
        anyhow::bail!("a truncation by {f} bits: at most {MAX_SHIFT} are possible");
    }
    Ok(())
}

/// What [`truncate`] of `n` elements sends: the masked x + r, in one round.
pub fn truncate_cost(n: usize) -> super::Cost {
    super::Cost::words(n, 1)
}

/// Server: shares of z / 2^f (to ±1 in the last place) from shares of z.
pub fn truncate(s: &mut Server, z: &RingTensor, f: u32) -> Result<RingTensor> {
    check_shift(f)?;
    let tag = s.at.next_material()?;
    let shape = z.shape().to_vec();
    let n = z.len();
    let mut prg = s.material(tag);
    let r = prg.tensor(&shape);
    let (r_low, r_msb) = if s.is_first() {
        (prg.tensor(&shape), prg.tensor(&shape))
    } else {
        let words = s.corrections(tag, 2 * n)?;
        (from_words(&shape, words[..n].to_vec()), from_words(&shape, words[n..].to_vec()))
    };
    let shift = Wrapping(1u64 << 62);
    let x = if s.is_first() { z.mapv(|v| v + shift) } else { z.clone() };
    let c = s.open(&[&(&x + &r)])?.remove(0);
    let first = s.is_first();
    Ok(ndarray::Zip::from(&c).and(&r_low).and(&r_msb).map_collect(|&c, &rl, &rm| {
        let c_msb = Wrapping(c.0 >> 63);
        // The wrap bit c63 ⊕ r63, linear in the shared r63 because c63 is public.
        let wrap = if first { c_msb } else { Wrapping(0) } + rm - Wrapping(2) * c_msb * rm;
        let mut v = wrap * Wrapping(1u64 << (63 - f)) - rl;
        if first {
            v += Wrapping((c.0 & LOW63) >> f) - Wrapping(1u64 << (62 - f));
        }
        v
    }))
}

/// Dealer half of [`truncate`].
pub fn deal_truncate(d: &mut Dealer, shape: &[usize], f: u32) -> Result<()> {
    check_shift(f)?;
    let tag = d.at.next_material()?;
    let (mut p0, mut p1) = (d.material(0, tag), d.material(1, tag));
    let r0 = p0.tensor(shape);
    let r = &r0 + &p1.tensor(shape);
    let (low0, msb0) = (p0.tensor(shape), p0.tensor(shape));
    let low1 = r.mapv(|v: Z| Wrapping((v.0 & LOW63) >> f)) - low0;
    let msb1 = r.mapv(|v: Z| Wrapping(v.0 >> 63)) - msb0;
    let mut words = WordWriter::with_capacity(2 * r.len());
    words.extend(low1.iter().map(|w| w.0));
    words.extend(msb1.iter().map(|w| w.0));
    d.send_corrections(tag, words)
}
