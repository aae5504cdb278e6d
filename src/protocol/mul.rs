//! Products of secret-shared tensors by Beaver's technique, generalised to any
//! bilinear map (element-wise product, MatMul, Conv2D), with masks that are reused.
//!
//! A private tensor x is masked once by a random a (its mask, from the dealer's
//! streams); the servers open e = x − a, which is uniform and so reveals nothing.
//! For a product z = x ⊗ y with y masked by b (opened f = y − b), the dealer supplies
//! shares of c = a ⊗ b, and
//!
//! ```text
//! z = e ⊗ f + e ⊗ b + a ⊗ f + c
//! ```
//!
//! is computed locally (server 0 adds the public e ⊗ f). A weight is masked and
//! opened once per model session; an activation once per prediction, however many
//! products it enters (tf-encrypted's generalised triples and mask caching).

use std::num::Wrapping;

use anyhow::Result;

use super::{Cost, Dealer, Server};
use crate::kernels::{Window, linear};
use crate::ring::{RingTensor, from_words};
use crate::transport::{WordWriter, read_words};

/// A private tensor's mask share and its opened masked value x − a.
#[derive(Debug, Clone)]
pub struct Masked {
    pub mask: RingTensor,
    pub opened: RingTensor,
}

/// The bilinear maps a Beaver product computes: the protocol's own vocabulary,
/// so that it knows nothing of the plan's ops (lowering picks the map).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Bilinear {
    MatMul {
        transpose_a: bool,
        transpose_b: bool,
    },
    /// NHWC input, HWIO filter.
    Conv2D(Window),
    /// NHWC input, [kh, kw, channels, multiplier] filter.
    DepthwiseConv2D(Window),
    /// The transpose of Conv2D onto an output of `out_hw`: NHWC input, [kh, kw,
    /// out, in] filter.
    Conv2DTranspose {
        window: Window,
        out_hw: [usize; 2],
    },
    /// Element-wise, with NumPy broadcasting.
    Elementwise,
    /// Matrix products over the last two axes, the batch axes broadcast
    /// (TensorFlow's BatchMatMulV2).
    BatchMatMul {
        adj_x: bool,
        adj_y: bool,
    },
}

impl Bilinear {
    /// The map on ring tensors.
    pub fn apply(&self, x: &RingTensor, y: &RingTensor) -> RingTensor {
        match self {
            Bilinear::MatMul { transpose_a, transpose_b } => linear::matmul(x, y, *transpose_a, *transpose_b),
            Bilinear::Conv2D(window) => linear::conv2d(x, y, window),
            Bilinear::DepthwiseConv2D(window) => linear::depthwise_conv2d(x, y, window),
            Bilinear::Conv2DTranspose { window, out_hw } => linear::conv2d_transpose(x, y, window, *out_hw),
            Bilinear::Elementwise => x * y,
            Bilinear::BatchMatMul { adj_x, adj_y } => linear::batch_matmul(x, y, *adj_x, *adj_y),
        }
    }
}

/// What opening `words` masked elements sends: one round, if there are any.
pub fn open_cost(words: usize) -> Cost {
    Cost::words(words, u64::from(words > 0))
}

/// What [`mul_many`] of a `d_len`-element multiplier and operands of `x_lens`
/// elements sends: every masked operand, in one round.
pub fn mul_many_cost(d_len: usize, x_lens: &[usize]) -> Cost {
    open_cost(d_len + x_lens.iter().sum::<usize>())
}

/// What [`mul_pairs`] of pairs of `lens` elements sends: both operands of every
/// pair, in one round.
pub fn mul_pairs_cost(lens: &[usize]) -> Cost {
    open_cost(2 * lens.iter().sum::<usize>())
}

/// Server: shares of x ⊗ y (with 2f fractional bits when both are fixed-point).
pub fn product(s: &mut Server, op: &Bilinear, x: &Masked, y: &Masked, out_shape: &[usize]) -> Result<RingTensor> {
    let tag = s.at.next_material()?;
    // e⊗b + e⊗f = e⊗(b + f): server 0 folds the public e⊗f into its first product.
    let folded;
    let y_side = if s.is_first() {
        folded = &y.mask + &y.opened;
        &folded
    } else {
        &y.mask
    };
    let mut z = op.apply(&x.opened, y_side) + op.apply(&x.mask, &y.opened);
    if s.is_first() {
        let c = s.material(tag).words(z.len());
        z.iter_mut().zip(c).for_each(|(z, c)| *z += Wrapping(c));
    } else {
        let message = s.correction_message(tag, out_shape.iter().product())?;
        z.iter_mut().zip(read_words(&message).iter()).for_each(|(z, &c)| *z += Wrapping(c));
    }
    Ok(z)
}

/// Dealer: c = a ⊗ b for the whole masks a and b, split so that server 0's share is
/// its own stream and server 1 receives the rest.
pub fn deal_product(d: &mut Dealer, op: &Bilinear, a: &RingTensor, b: &RingTensor) -> Result<()> {
    let tag = d.at.next_material()?;
    let c = op.apply(a, b);
    let c0 = d.material(0, tag).words(c.len());
    let mut corrections = WordWriter::with_capacity(c.len());
    corrections.extend(c.iter().zip(c0).map(|(c, c0)| (*c - Wrapping(c0)).0));
    d.send_corrections(tag, corrections)
}

/// Server: d·x for each x in `xs` (d broadcast against x), with d a shared bit or
/// any shared tensor, using fresh masks for this product only. One round.
pub fn mul_many(s: &mut Server, d: &RingTensor, xs: &[&RingTensor]) -> Result<Vec<RingTensor>> {
    let tag = s.at.next_material()?;
    let mut prg = s.material(tag);
    let a_d = prg.tensor(d.shape());
    let a_x: Vec<RingTensor> = xs.iter().map(|x| prg.tensor(x.shape())).collect();
    let out_shapes: Vec<Vec<usize>> = xs.iter().map(|x| (&a_d * *x).shape().to_vec()).collect();
    let cs: Vec<RingTensor> = if s.is_first() {
        out_shapes.iter().map(|sh| prg.tensor(sh)).collect()
    } else {
        let total = out_shapes.iter().map(|sh| sh.iter().product::<usize>()).sum();
        let words = s.corrections(tag, total)?;
        let mut at = 0;
        out_shapes
            .iter()
            .map(|sh| {
                let n: usize = sh.iter().product();
                at += n;
                from_words(sh, words[at - n..at].to_vec())
            })
            .collect()
    };
    let mut masked = vec![d - &a_d];
    masked.extend(xs.iter().zip(&a_x).map(|(x, a)| *x - a));
    let opened = s.open(&masked.iter().collect::<Vec<_>>())?;
    let e_d = &opened[0];
    Ok(xs
        .iter()
        .enumerate()
        .map(|(j, _)| {
            let e_x = &opened[j + 1];
            let mut z = &(e_d * &a_x[j]) + &(&a_d * e_x) + &cs[j];
            if s.is_first() {
                z = z + e_d * e_x;
            }
            z
        })
        .collect())
}

/// Dealer half of [`mul_many`].
pub fn deal_mul_many(d: &mut Dealer, d_shape: &[usize], x_shapes: &[&[usize]]) -> Result<()> {
    let tag = d.at.next_material()?;
    let (mut p0, mut p1) = (d.material(0, tag), d.material(1, tag));
    let a_d = p0.tensor(d_shape) + p1.tensor(d_shape);
    let a_x: Vec<RingTensor> = x_shapes.iter().map(|sh| p0.tensor(sh) + p1.tensor(sh)).collect();
    let mut corrections = WordWriter::default();
    for a in &a_x {
        let c = &a_d * a;
        let c0 = p0.tensor(c.shape());
        corrections.extend((c - c0).iter().map(|w| w.0));
    }
    d.send_corrections(tag, corrections)
}

/// Server: element-wise products l_j·r_j of several same-shape pairs, with fresh
/// masks, all opened in one round.
pub fn mul_pairs(s: &mut Server, pairs: &[(&RingTensor, &RingTensor)]) -> Result<Vec<RingTensor>> {
    let tag = s.at.next_material()?;
    let mut prg = s.material(tag);
    let masks: Vec<(RingTensor, RingTensor)> =
        pairs.iter().map(|(l, r)| (prg.tensor(l.shape()), prg.tensor(r.shape()))).collect();
    let cs: Vec<RingTensor> = if s.is_first() {
        pairs.iter().map(|(l, _)| prg.tensor(l.shape())).collect()
    } else {
        let total = pairs.iter().map(|(l, _)| l.len()).sum();
        let words = s.corrections(tag, total)?;
        let mut at = 0;
        pairs
            .iter()
            .map(|(l, _)| {
                at += l.len();
                from_words(l.shape(), words[at - l.len()..at].to_vec())
            })
            .collect()
    };
    let mut masked = Vec::with_capacity(2 * pairs.len());
    for ((l, r), (al, ar)) in pairs.iter().zip(&masks) {
        masked.push(*l - al);
        masked.push(*r - ar);
    }
    let opened = s.open(&masked.iter().collect::<Vec<_>>())?;
    Ok(masks
        .iter()
        .zip(&cs)
        .enumerate()
        .map(|(j, ((al, ar), c))| {
            let (el, er) = (&opened[2 * j], &opened[2 * j + 1]);
            let mut z = &(el * ar) + &(al * er) + c;
            if s.is_first() {
                z = z + el * er;
            }
            z
        })
        .collect())
}

/// Dealer half of [`mul_pairs`], for pairs of tensors of these shapes.
pub fn deal_mul_pairs(d: &mut Dealer, shapes: &[&[usize]]) -> Result<()> {
    let tag = d.at.next_material()?;
    let (mut p0, mut p1) = (d.material(0, tag), d.material(1, tag));
    let masks: Vec<(RingTensor, RingTensor)> = shapes
        .iter()
        .map(|sh| {
            let (l0, r0) = (p0.tensor(sh), p0.tensor(sh));
            let (l1, r1) = (p1.tensor(sh), p1.tensor(sh));
            (l0 + l1, r0 + r1)
        })
        .collect();
    let mut corrections = WordWriter::default();
    for ((al, ar), sh) in masks.iter().zip(shapes) {
        let c0 = p0.tensor(sh);
        corrections.extend((al * ar - c0).iter().map(|w| w.0));
    }
    d.send_corrections(tag, corrections)
}
