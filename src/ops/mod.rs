//! Secure ops as units: for each kind of step a plan runs on shares, its server
//! half, its dealer half, its cost (bytes each server sends, rounds) and its
//! memory, side by side in one module behind one trait, [`SecureOp`].
//!
//! Lowering ([`crate::lower`]) picks one unit per plan step; every party runs the
//! same lowered program through this trait, and the cost model is the sum of the
//! units' costs, which are sums of the primitives' own ([`crate::protocol`]):
//! a faster primitive changes one formula.
//!
//! Most plan ops keep their plain meaning (shape rule, plaintext evaluation) in
//! [`crate::plan::Op`] and map onto one of the kind units here (`local`,
//! `product`, `relu`, `tournament`, …). An op defined *whole* in its own module —
//! shape rule, plaintext meaning, lowering and secure halves — is an [`OpUnit`],
//! listed once in [`units!`] below: adding one that composes existing primitives
//! touches that module, this list and its frontend's table, nothing else.

mod abs;
mod activation;
mod batch_matmul;
mod clip;
mod conv_transpose;
mod depthwise;
mod exp;
mod leaky_relu;
mod less;
mod lifted_add;
mod local;
mod maximum;
mod one_hot;
mod piecewise;
mod product;
mod reciprocal;
mod relu;
mod relu6;
mod resize;
mod rsqrt;
mod scaled;
mod softmax;
mod tournament;

use std::collections::HashMap;
use std::ops::Range;

use anyhow::Result;
use ndarray::{ArrayD, IxDyn};

pub use abs::Abs;
pub use activation::Activation;
pub use batch_matmul::BatchMatMul;
pub use clip::Clip;
pub use conv_transpose::Conv2DTranspose;
pub use depthwise::DepthwiseConv2D;
pub use exp::Exp;
pub use leaky_relu::LeakyRelu;
pub use less::Less;
pub use lifted_add::LiftedAdd;
pub use local::Local;
pub use maximum::{Maximum, Minimum};
pub use one_hot::OneHot;
pub use piecewise::{Curve, GELU_TANH_CUBIC, GELU_TANH_SCALE, Piecewise, SELU_ALPHA, SELU_SCALE};
pub use product::Product;
pub use reciprocal::Reciprocal;
pub use relu::{Relu, ReluShift};
pub use relu6::Relu6;
pub use resize::ResizeBilinear;
pub use rsqrt::Rsqrt;
pub use scaled::{Scaled, ShiftPool, SumPool, scale_bits};
pub use softmax::Softmax;
pub use tournament::{Groups, Tournament, pool_groups, reduce_groups};

use crate::plan::{Plan, Step, ValueId};
use crate::protocol::mul::Masked;
use crate::protocol::{Cost, Dealer, Server};
use crate::ring::{FixedPoint, RingTensor, Z};
use crate::tensor::Tensor;

/// What a step's halves see besides their inputs: the public program around it.
pub struct StepCx<'a> {
    pub plan: &'a Plan,
    pub step: &'a Step,
    pub fp: FixedPoint,
    /// The prediction (1, 2, …): masks of activations are per prediction.
    pub seq: u32,
}

impl StepCx<'_> {
    pub fn shape(&self, v: ValueId) -> &[usize] {
        &self.plan.values[v].shape
    }

    pub fn in_shape(&self, i: usize) -> &[usize] {
        self.shape(self.step.inputs[i])
    }

    pub fn out_shape(&self) -> &[usize] {
        self.shape(self.step.output)
    }

    pub fn out_len(&self) -> usize {
        self.plan.values[self.step.output].len()
    }
}

/// A server's masked private values (x − a with its share of a): the weights',
/// opened once per session, and this prediction's activations, each opened the
/// first time a product needs it.
#[derive(Default)]
pub struct ServerMasks {
    pub weights: HashMap<ValueId, Masked>,
    pub activations: HashMap<ValueId, Masked>,
}

/// The dealer's whole masks, likewise.
#[derive(Default)]
pub struct DealerMasks {
    pub weights: HashMap<ValueId, RingTensor>,
    pub activations: HashMap<ValueId, RingTensor>,
}

/// What the cost formulas track across steps: which activations a product has
/// opened already in this prediction (they are opened once).
pub struct CostCx<'a> {
    pub plan: &'a Plan,
    pub fp: FixedPoint,
    /// The program's comparison protocol.
    pub comparison: crate::protocol::Comparison,
    pub step: &'a Step,
    pub opened: &'a mut [bool],
}

impl CostCx<'_> {
    pub fn out_len(&self) -> usize {
        self.plan.values[self.step.output].len()
    }
}

/// One kind of secure step.
pub trait SecureOp: std::fmt::Debug + Send + Sync {
    /// Server half: this server's share of the step's output from its shares of
    /// the inputs.
    fn run(&self, s: &mut Server, cx: &StepCx, masks: &mut ServerMasks, ins: &[&RingTensor]) -> Result<RingTensor>;

    /// Dealer half: the material the server half consumes, in the same order.
    fn deal(&self, d: &mut Dealer, cx: &StepCx, masks: &mut DealerMasks) -> Result<()>;

    /// Bytes each server sends and rounds, as the two halves above do them.
    fn cost(&self, cx: &mut CostCx) -> Cost;

    /// How many pieces the step's traffic is cut in (see [`chunks`]): the memory
    /// estimate holds one piece in flight at a time.
    fn pieces(&self, _cx: &CostCx) -> usize {
        1
    }

    /// Bytes the step materialises besides its values and messages (tournament
    /// groups), counted by the memory estimate before anything is built.
    fn materialised(&self, _cx: &CostCx) -> u64 {
        0
    }

    /// Whether it takes its operands in masked form (a Beaver product): its weight
    /// operands are then masked and opened once per session, at set-up.
    fn masks_operands(&self) -> bool {
        false
    }

    /// How it runs on shares, as `inspect` tells a user: required of every unit, so
    /// that a new one cannot be reported as something it is not.
    fn how(&self) -> How;
}

/// How a step runs on shares: what it costs in kind, and whether it is exact.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum How {
    /// Each server on its own shares: no communication, exact.
    Local,
    /// A local sum times a public scale, then one truncation.
    Scaled,
    /// A Beaver product of two private operands (masked, opened), then a truncation.
    Product,
    /// Exact, by dealer-assisted comparisons (DReLU), and products of their bits.
    Comparison,
    /// An exact comparison that also truncates (a product's deferred
    /// truncation) in its own opening, to one unit in the last place.
    ComparisonTruncation,
    /// An approximation of `function` over its documented `range`, with its
    /// error there (measured on a grid: by `inspect` itself for a curve, by the
    /// tests for an iteration), and what it computes `outside` that range.
    Approximation { function: &'static str, range: [f64; 2], error: String, outside: String },
}

impl std::fmt::Display for How {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            How::Local => f.write_str("local"),
            How::Scaled => f.write_str("local, public scale, truncation"),
            How::Product => f.write_str("Beaver product, truncation"),
            How::Comparison => f.write_str("exact, by comparison"),
            How::ComparisonTruncation => f.write_str("exact comparison, the product's truncation in its opening"),
            How::Approximation { function, range: [lo, hi], error, outside } => {
                write!(f, "approximation of {function} on [{lo}, {hi}]: {error}; outside: {outside}")
            }
        }
    }
}

/// An op defined whole in its own module: its plan meaning beside its secure halves.
pub trait OpUnit: SecureOp {
    fn name(&self) -> &'static str;

    /// How many inputs it takes.
    fn arity(&self) -> usize;

    /// The output shape for inputs of these shapes, or why they do not fit.
    /// It sees plans from the network: it must not panic or overflow.
    fn output_shape(&self, ins: &[&[usize]]) -> Result<Vec<usize>, String>;

    /// Its plaintext meaning (the reference and the constant folder).
    fn eval(&self, ins: &[&Tensor]) -> Result<Tensor, String>;

    /// Why it cannot run on shares with these input shapes, if it cannot.
    fn check_secure(&self, _ins: &[&[usize]]) -> Result<(), String> {
        Ok(())
    }

    /// How it treats the batch axis (whether a padded batch changes the real
    /// rows): an op that does not say mixes rows, which refuses padding.
    fn rows(&self, _ins: &[&[usize]]) -> crate::plan::RowRule {
        crate::plan::RowRule::Mixes
    }
}

/// The secure half of an op that is a Beaver product with its own bilinear map:
/// everything is its `product()`'s (a [`Product`]), its operands are masked.
macro_rules! product_unit {
    ($ty:ty) => {
        impl $crate::ops::SecureOp for $ty {
            fn run(
                &self,
                s: &mut $crate::protocol::Server,
                cx: &$crate::ops::StepCx,
                masks: &mut $crate::ops::ServerMasks,
                ins: &[&$crate::ring::RingTensor],
            ) -> anyhow::Result<$crate::ring::RingTensor> {
                self.product().run(s, cx, masks, ins)
            }

            fn deal(
                &self,
                d: &mut $crate::protocol::Dealer,
                cx: &$crate::ops::StepCx,
                masks: &mut $crate::ops::DealerMasks,
            ) -> anyhow::Result<()> {
                self.product().deal(d, cx, masks)
            }

            fn cost(&self, cx: &mut $crate::ops::CostCx) -> $crate::protocol::Cost {
                self.product().cost(cx)
            }

            fn masks_operands(&self) -> bool {
                true
            }

            fn how(&self) -> $crate::ops::How {
                $crate::ops::How::Product
            }
        }
    };
}
pub(crate) use product_unit;

/// The ops defined whole in their own modules, listed once: each entry becomes a
/// variant of [`Unit`], which [`crate::plan::Op::Unit`] carries.
macro_rules! units {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub enum Unit {
            $($variant($ty)),*
        }

        impl Unit {
            pub fn def(&self) -> &dyn OpUnit {
                match self {
                    $(Unit::$variant(u) => u),*
                }
            }
        }

        $(impl From<$ty> for crate::plan::Op {
            fn from(u: $ty) -> crate::plan::Op {
                crate::plan::Op::Unit(Unit::$variant(u))
            }
        })*
    };
}

units! {
    Relu6(Relu6),
    LeakyRelu(LeakyRelu),
    Maximum(Maximum),
    Minimum(Minimum),
    DepthwiseConv2D(DepthwiseConv2D),
    Exp(Exp),
    Reciprocal(Reciprocal),
    Activation(Activation),
    Conv2DTranspose(Conv2DTranspose),
    ResizeBilinear(ResizeBilinear),
    Abs(Abs),
    Clip(Clip),
    BatchMatMul(BatchMatMul),
    OneHot(OneHot),
    Less(Less),
}

/// The unit of each lowered step: one variant per kind, each a [`SecureOp`].
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    Local(Local),
    Product(Product),
    LiftedAdd(LiftedAdd),
    Scaled(Scaled),
    ShiftPool(ShiftPool),
    Relu(Relu),
    Tournament(Tournament),
    Piecewise(Piecewise),
    Rsqrt(Rsqrt),
    Softmax(Softmax),
    Unit(Unit),
    ReluShift(ReluShift),
    SumPool(SumPool),
}

impl Kind {
    pub fn how(&self) -> How {
        self.op().how()
    }

    pub fn op(&self) -> &dyn SecureOp {
        match self {
            Kind::Local(u) => u,
            Kind::Product(u) => u,
            Kind::LiftedAdd(u) => u,
            Kind::Scaled(u) => u,
            Kind::ShiftPool(u) => u,
            Kind::Relu(u) => u,
            Kind::Tournament(u) => u,
            Kind::Piecewise(u) => u,
            Kind::Rsqrt(u) => u,
            Kind::Softmax(u) => u,
            Kind::Unit(u) => u.def(),
            Kind::ReluShift(u) => u,
            Kind::SumPool(u) => u,
        }
    }
}

/// A kind prints as its unit does (`ProductKeepScale`, `ShiftPool { e: 2 }`).
impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.op(), f)
    }
}

/// Element-wise comparisons over large tensors run in chunks of at most this many
/// DReLUs, so that neither a server nor the dealer holds the material of millions at
/// once (the `functional` test model's Tanh over 627k elements is 15.7M DReLUs:
/// 5.8 GB in one piece). Each chunk costs its own rounds.
pub const MAX_DRELUS_PER_CHUNK: usize = 1 << 20;

/// The element ranges of an element-wise step over `n` elements that needs
/// `drelus_per_element` comparisons each. Public: servers, dealer and the cost
/// formulas all cut the same way.
pub fn chunks(n: usize, drelus_per_element: usize) -> Vec<Range<usize>> {
    let size = (MAX_DRELUS_PER_CHUNK / drelus_per_element.max(1)).max(1);
    (0..n).step_by(size).map(|start| start..(start + size).min(n)).collect()
}

/// Apply an element-wise protocol to x chunk by chunk (see [`chunks`]).
pub fn by_chunks(
    x: &RingTensor,
    drelus_per_element: usize,
    mut f: impl FnMut(&RingTensor) -> Result<RingTensor>,
) -> Result<RingTensor> {
    let pieces = chunks(x.len(), drelus_per_element);
    if pieces.len() <= 1 {
        return f(x);
    }
    let flat: Vec<Z> = x.iter().copied().collect();
    let mut out = Vec::with_capacity(flat.len());
    for c in pieces {
        let part = ArrayD::from_shape_vec(IxDyn(&[c.len()]), flat[c].to_vec()).expect("shape");
        out.extend(f(&part)?.iter().copied());
    }
    Ok(ArrayD::from_shape_vec(x.raw_dim(), out).expect("shape"))
}

/// The cost of an element-wise step over `n` elements, chunk by chunk.
pub fn chunked_cost(n: usize, drelus_per_element: usize, per_chunk: impl Fn(usize) -> Cost) -> Cost {
    chunks(n, drelus_per_element).into_iter().map(|c| per_chunk(c.len())).sum()
}

/// A public constant as this server's share: server 0 holds it, server 1 zero.
pub(crate) fn public_share(s: &Server, v: Z) -> Z {
    if s.is_first() { v } else { std::num::Wrapping(0) }
}
