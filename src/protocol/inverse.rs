//! The reciprocal 1/x and the inverse square root 1/√x of private positive x:
//! a secure initial approximation from x's octave, then Goldschmidt iterations.
//!
//! **Octave.** One batched DReLU compares x with every power of two 2^k of the
//! range (the breakpoints of a [`crate::protocol::compare::piecewise_many`]):
//! d_k = [x ≥ 2^k], and s_k = d_k − d_{k+1} is one-hot on the octave
//! [2^k, 2^(k+1)) holding x (all zero outside the range). Any public constant per
//! octave is then a *local* linear combination Σ s_k·c_k. With
//! q_k = (2/3)·2^−k, x·q_k lies in [2/3, 4/3) on its octave, so
//!
//! ```text
//! e_0 = 1 − x·q(x) ∈ (−1/3, 1/3]        (one product, one truncation)
//! ```
//!
//! **Iterations** (Goldschmidt, as MP-SPDZ's `sfix` division and Catrina–Saxena's
//! fixed-point division; CrypTen instead starts from an exponential and runs
//! Newton, which costs an `exp` and has no error bound for large x):
//!
//! * reciprocal, y_0 = q(x): y_{i+1} = y_i·(1 + e_i), e_{i+1} = e_i², both
//!   products in one round; y_4 = (1 − e_0^16)/x, relative error e_0^16 ≤ 2.3e-8;
//! * inverse square root, y_0 = √q(x) (so x·y_0² = 1 − e_0): y_{i+1} = y_i·(1 + e_i/2)
//!   and e_{i+1} = e_i²·(3 + e_i)/4, which keeps x·y_i² = 1 − e_i; e: 1/3, 0.093,
//!   6.6e-3, 3.3e-5, 8e-10.
//!
//! x enters one product only: the iterations never read it again, which is what
//! makes the tails exact. **Outside the range** q is exactly zero, so the first
//! product is exactly zero, and the servers subtract the (shared) tail indicator
//! from e_0: e_0 = 0 there, every e_i stays 0, and y_0 is set to the saturation
//! constant — the value at the range end that is passed: 2^−lo (or 2^−lo/2)
//! below 2^lo, including x ≤ 0; 0 for the reciprocal (1/x < 2^−f: below one unit)
//! and 2^−hi/2 for the inverse square root at or above 2^hi.
//!
//! **Precision.** y is carried with [`y_bits`] fractional bits and q with
//! [`q_bits`], so that the constants of the top octaves keep their digits; e is
//! carried with f bits (its rounding, ±2^−f per step, is the main error).
//!
//! Everything a server receives is an opened masked operand or a masked
//! truncation input (uniform) and the DReLU's masked bits: nothing about x.

use std::num::Wrapping;

use anyhow::Result;
use ndarray::{Axis, IxDyn, concatenate};

use super::compare::{deal_drelu_thresholds, drelu_thresholds, drelu_thresholds_cost};
use super::comparison::Width;
use super::mul::{deal_mul_pairs, mul_pairs, mul_pairs_cost};
use super::trunc::{deal_truncate, truncate, truncate_cost};
use super::{Cost, Dealer, Server};
use crate::ring::{FixedPoint, RingTensor, Z};

/// Goldschmidt iterations (multiplications of y).
pub const ITERATIONS: usize = 4;

/// Which power of x: x^−1 or x^−1/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Power {
    Reciprocal,
    Rsqrt,
}

/// A power of x over the octaves [2^lo, 2^hi): its comparisons are hi − lo + 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Inverse {
    pub power: Power,
    pub lo: i32,
    pub hi: i32,
}

impl Inverse {
    /// The whole range at `fp`: from 2^−⌊f/2⌋, where x still has ⌈f/2⌉
    /// significant bits (below, the input's own rounding exceeds 2^−(f/2)
    /// relative), to 2^f for the reciprocal (beyond, 1/x is below one unit) and to
    /// the value bound 2^(62−2f) for the inverse square root.
    pub fn full(power: Power, fp: FixedPoint) -> Inverse {
        let f = fp.frac_bits as i32;
        let bound = 62 - 2 * f;
        let hi = match power {
            Power::Reciprocal => f.min(bound),
            Power::Rsqrt => bound,
        };
        Inverse { power, lo: -(f / 2), hi }
    }

    /// The comparisons per element.
    pub fn breaks(&self) -> usize {
        usize::try_from(self.hi - self.lo + 1).unwrap_or(1)
    }

    /// The breakpoints, ring-encoded at `fp`: 2^k for every octave edge.
    fn powers(&self, fp: FixedPoint) -> Vec<Z> {
        (0..self.breaks()).map(|j| fp.encode_value(2f64.powi(self.lo + j as i32))).collect()
    }

    fn exponent(&self) -> f64 {
        match self.power {
            Power::Reciprocal => -1.0,
            Power::Rsqrt => -0.5,
        }
    }

    /// What it gives below 2^lo (x ≤ 0 included) and at or above 2^hi.
    pub fn saturation(&self) -> (f64, f64) {
        let below = 2f64.powi(self.lo).powf(self.exponent());
        let above = match self.power {
            Power::Reciprocal => 0.0,
            Power::Rsqrt => 2f64.powi(self.hi).powf(self.exponent()),
        };
        (below, above)
    }

    /// The octave [2^k, 2^(k+1))'s q_k (x·q_k ∈ [2/3, 4/3)) with `fq`'s bits,
    /// and y_0 with `fy`'s, from the rounded q_k: x·y_0² (or x·y_0) is then what
    /// e_0 measures, whatever the rounding.
    fn octave(&self, k: i32, fq: FixedPoint, fy: FixedPoint) -> (Z, Z) {
        let q = fq.encode_value(2.0 / 3.0 * 2f64.powi(-k));
        let rounded = q.0 as f64 / fq.scale();
        let y = match self.power {
            Power::Reciprocal => rounded,
            Power::Rsqrt => rounded.sqrt(),
        };
        (q, fy.encode_value(y))
    }
}

/// Fractional bits of y: y·(1 + e) at y_bits + f bits stays below 2^62 for
/// y ≤ 2^(f/2) (the reciprocal's largest value).
pub fn y_bits(fp: FixedPoint) -> u32 {
    let f = fp.frac_bits;
    (2 * f).min(60 - f - f.div_ceil(2))
}

/// Fractional bits of q: x·q ≤ 4/3 at q_bits + f bits stays below 2^62.
pub fn q_bits(fp: FixedPoint) -> u32 {
    60 - fp.frac_bits
}

/// Server: x^−1 or x^−1/2 of every element of x (see the module's text for the
/// range and the tails).
pub fn inverse(s: &mut Server, x: &RingTensor, inv: &Inverse, fp: FixedPoint) -> Result<RingTensor> {
    let n = x.len();
    let f = fp.frac_bits;
    let breaks = inv.breaks();
    let flat = x.to_shape(IxDyn(&[n]))?.to_owned();
    let first = s.is_first();
    let public = |v: Z| if first { v } else { Wrapping(0) };
    // [x ≥ 2^k] for every power of two of the range.
    let powers = inv.powers(fp);
    let d = drelu_thresholds(s, &flat, &powers, Width::for_thresholds(fp, &powers))?;
    let (fy, fq) = (FixedPoint { frac_bits: y_bits(fp) }, FixedPoint { frac_bits: q_bits(fp) });
    let constants: Vec<(Z, Z)> = (inv.lo..inv.hi).map(|k| inv.octave(k, fq, fy)).collect();
    let (below_v, above_v) = inv.saturation();
    let (below_v, above_v) = (fy.encode_value(below_v), fy.encode_value(above_v));
    let zeros = || RingTensor::zeros(IxDyn(&[n]));
    let (mut q, mut y, mut tails) = (zeros(), zeros(), zeros());
    for i in 0..n {
        let below = public(Wrapping(1)) - d[[0, i]];
        let above = d[[breaks - 1, i]];
        let (mut qi, mut yi) = (Wrapping(0), Wrapping(0));
        for (k, &(qk, yk)) in constants.iter().enumerate() {
            let h = d[[k, i]] - d[[k + 1, i]];
            qi += h * qk;
            yi += h * yk;
        }
        q[[i]] = qi;
        y[[i]] = yi + below * below_v + above * above_v;
        tails[[i]] = below + above;
    }
    let p = mul_pairs(s, &[(&flat, &q)])?.remove(0);
    let p = truncate(s, &p, fq.frac_bits)?;
    let one = public(fp.encode_value(1.0));
    let unit = Wrapping(1u64 << f);
    let mut e: RingTensor = ndarray::Zip::from(&p).and(&tails).map_collect(|&p, &t| one - p - t * unit);
    for it in 0..ITERATIONS {
        let last = it + 1 == ITERATIONS;
        match inv.power {
            Power::Reciprocal => {
                let factor = e.mapv(|v| v + one);
                if last {
                    let z = mul_pairs(s, &[(&y, &factor)])?.remove(0);
                    y = truncate(s, &z, fy.frac_bits)?;
                } else {
                    let z = mul_pairs(s, &[(&y, &factor), (&e, &e)])?;
                    (y, e) = truncate_both(s, &z[0], &z[1], f)?;
                }
            }
            Power::Rsqrt => {
                // y·(2 + e) = 2·y·(1 + e/2): the truncation takes the 2 out.
                let factor = e.mapv(|v| v + one + one);
                if last {
                    let z = mul_pairs(s, &[(&y, &factor)])?.remove(0);
                    y = truncate(s, &z, fy.frac_bits + 1)?;
                } else {
                    let z = mul_pairs(s, &[(&y, &factor), (&e, &e)])?;
                    let square;
                    (y, square) = truncate_both(s, &z[0], &z[1].mapv(|v| v + v), f + 1)?;
                    let three = e.mapv(|v| v + one + one + one);
                    let w = mul_pairs(s, &[(&square, &three)])?.remove(0);
                    e = truncate(s, &w, f + 2)?;
                }
            }
        }
    }
    Ok(y.into_shape_with_order(x.raw_dim())?)
}

/// Two tensors of n elements truncated by `shift` in one round.
fn truncate_both(s: &mut Server, a: &RingTensor, b: &RingTensor, shift: u32) -> Result<(RingTensor, RingTensor)> {
    let n = a.len();
    let both = truncate(s, &concatenate(Axis(0), &[a.view(), b.view()])?, shift)?;
    let (a, b) = both.view().split_at(Axis(0), n);
    Ok((a.to_owned(), b.to_owned()))
}

/// Dealer half of [`inverse`] for `n` elements.
pub fn deal_inverse(d: &mut Dealer, n: usize, inv: &Inverse, fp: FixedPoint) -> Result<()> {
    let f = fp.frac_bits;
    let flat = [n];
    let powers = inv.powers(fp);
    deal_drelu_thresholds(d, n, inv.breaks(), Width::for_thresholds(fp, &powers))?;
    deal_mul_pairs(d, &[&flat])?;
    deal_truncate(d, &flat, q_bits(fp))?;
    for it in 0..ITERATIONS {
        let last = it + 1 == ITERATIONS;
        let rsqrt = u32::from(inv.power == Power::Rsqrt);
        if last {
            deal_mul_pairs(d, &[&flat])?;
            deal_truncate(d, &flat, y_bits(fp) + rsqrt)?;
        } else {
            deal_mul_pairs(d, &[&flat, &flat])?;
            deal_truncate(d, &[2 * n], f + rsqrt)?;
            if inv.power == Power::Rsqrt {
                deal_mul_pairs(d, &[&flat])?;
                deal_truncate(d, &flat, f + 2)?;
            }
        }
    }
    Ok(())
}

/// What [`inverse`] of `n` elements sends: the DReLUs of every breakpoint; then
/// rounds of products, each followed by its truncation.
pub fn inverse_cost(cmp: super::Comparison, n: usize, inv: &Inverse, fp: FixedPoint) -> Cost {
    let step = |pairs: usize| mul_pairs_cost(&vec![n; pairs]) + truncate_cost(pairs * n);
    let middle = match inv.power {
        Power::Reciprocal => step(2),
        Power::Rsqrt => step(2) + step(1),
    };
    let w = Width::for_thresholds(fp, &inv.powers(fp));
    drelu_thresholds_cost(cmp, n, inv.breaks(), w) + step(1) + middle.times(ITERATIONS as u64 - 1) + step(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranges_at_sixteen_bits_are_the_documented_ones() {
        let fp = FixedPoint::default();
        assert_eq!(Inverse::full(Power::Reciprocal, fp), Inverse { power: Power::Reciprocal, lo: -8, hi: 16 });
        assert_eq!(Inverse::full(Power::Rsqrt, fp), Inverse { power: Power::Rsqrt, lo: -8, hi: 30 });
        assert_eq!(Inverse::full(Power::Reciprocal, fp).saturation(), (256.0, 0.0));
        assert_eq!(Inverse::full(Power::Rsqrt, fp).saturation(), (16.0, 2f64.powi(-15)));
        assert_eq!((y_bits(fp), q_bits(fp)), (32, 44));
    }

    /// Every product stays below 2^62 at every allowed precision: y·(2 + e) with
    /// y at its largest (the saturation below) and x·q at its largest (4/3).
    #[test]
    fn intermediates_fit_the_truncation_at_every_precision() {
        for f in FixedPoint::MIN_FRAC_BITS..=FixedPoint::MAX_FRAC_BITS {
            let fp = FixedPoint::new(f).unwrap();
            for power in [Power::Reciprocal, Power::Rsqrt] {
                let inv = Inverse::full(power, fp);
                let (below, _) = inv.saturation();
                let y = (below * 1.34 * 2f64.powi(y_bits(fp) as i32)).log2() + 2.34f64.log2() + f as f64;
                let xq = (4.0f64 / 3.0).log2() + (q_bits(fp) + f) as f64;
                assert!(y < 62.0 && xq < 62.0, "f = {f}, {power:?}: 2^{y:.1}, 2^{xq:.1}");
                assert!(inv.lo < inv.hi, "f = {f}");
            }
        }
    }
}
