//! Lowering: the plan, once, into the secure program every party runs.
//!
//! [`lower`] picks each step's unit ([`crate::ops`]), applies the fusions
//! ([`fuse`]), peels off the op the client applies to the opened output, and
//! records when each value is last read. The result, a [`Program`], is the
//! artifact: `deploy` sends it, `serve` checks it ([`Program::check`]) and its
//! memory estimate before building anything, and the servers, the dealer, the
//! model owner and the client all execute it. It travels with a format version
//! and a SHA-256 digest of its serialisation.

mod cost;
mod fuse;

use anyhow::Result;

use crate::error::Error;
use crate::ops::{Groups, Kind, Local, Piecewise, Product, Relu, Scaled, Tournament};
use crate::plan::{Op, Plan, Source, ValueId, ValueType};
use crate::protocol::Comparison;
use crate::ring::FixedPoint;

pub use cost::BASE_MEMORY;

/// The serialisation format of [`Program`]: a server refuses another.
///
/// 2: the comparison protocol is a field of the program, and depthwise
/// convolutions, transposed convolutions and bilinear resizes carry a layout.
/// A format-1 build would drop both fields and run an NCHW step as NHWC, or
/// the bitwise comparison against an FSS dealer, so it must refuse them.
pub const PROGRAM_FORMAT: u32 = 2;

/// Plan steps number the step field (a u32) of message and stream keys, whose
/// top numbers name the messages outside every program's steps
/// ([`crate::runtime::message::Outside`]).
pub const MAX_PLAN_STEPS: usize = crate::runtime::message::Outside::FIRST as usize;
/// Value ids number mask and sharing streams (a u32), and the share message of
/// an input or a weight is tag id + 1.
pub const MAX_PLAN_VALUES: usize = u32::MAX as usize;

/// What the client applies, in the clear, to the opened output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ClientFinal {
    /// The servers open the logits minus the first logit of each row: softmax is
    /// invariant under that shift, and the differences log p_i − log p_0 are a
    /// function of the softmax output itself, so the client learns nothing more.
    Softmax,
    /// Sigmoid is a bijection: its input and its output tell the same.
    Sigmoid,
}

/// The lowered secure program: public (no weights), and the same for every party.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Program {
    /// [`PROGRAM_FORMAT`] of the build that lowered it.
    pub format: u32,
    pub frac_bits: u32,
    /// The protocol of every comparison (absent: bitwise, so that a bitwise
    /// program serialises, and digests, as before the choice existed).
    #[serde(default, skip_serializing_if = "Comparison::is_bitwise")]
    pub comparison: Comparison,
    /// The public plan: shapes and architecture, no weight values.
    pub plan: Plan,
    /// One unit per plan step that runs on shares (a prefix of the plan's steps).
    pub kinds: Vec<Kind>,
    /// The value the servers open to the client.
    pub revealed: ValueId,
    pub client_final: Option<ClientFinal>,
    /// Fractional bits of the revealed value (0 for ArgMax's integer output).
    pub revealed_frac_bits: Option<u32>,
    /// Weights that enter products, masked and opened once per session.
    pub masked_weights: Vec<ValueId>,
    /// For each value, the step after which no step reads it (its shares are
    /// freed then); `None` for values kept to the end (weights, what is opened)
    /// or never read.
    pub last_use: Vec<Option<usize>>,
}

/// Lower `plan` for fixed-point numbers of `fp`'s fractional bits, with bitwise
/// comparisons.
pub fn lower(plan: &Plan, fp: FixedPoint) -> Result<Program> {
    lower_with(plan, fp, Comparison::Bitwise)
}

/// Lower `plan` for `fp` with every comparison by `comparison`.
pub fn lower_with(plan: &Plan, fp: FixedPoint, comparison: Comparison) -> Result<Program> {
    let plan = plan.public();
    if plan.steps.len() > MAX_PLAN_STEPS || plan.values.len() > MAX_PLAN_VALUES {
        return Err(Error::unsupported(format!(
            "a plan of {} steps and {} values: at most {MAX_PLAN_STEPS} steps and {MAX_PLAN_VALUES} values",
            plan.steps.len(),
            plan.values.len()
        )));
    }
    let last = plan.steps.iter().position(|s| s.output == plan.output);
    let client_final = last.and_then(|i| match plan.steps[i].op {
        Op::Softmax => Some(ClientFinal::Softmax),
        Op::Sigmoid => Some(ClientFinal::Sigmoid),
        _ => None,
    });
    let run_steps = match (last, client_final) {
        (Some(i), Some(_)) => i,
        _ => plan.steps.len(),
    };
    let revealed = if client_final.is_some() { plan.steps[run_steps].inputs[0] } else { plan.output };
    let mut kinds = Vec::with_capacity(run_steps);
    for step in &plan.steps[..run_steps] {
        let unsupported =
            |why: &str| Error::unsupported(format!("{} `{}`: {why}; run it with --plaintext", step.op_type, step.node));
        let kind = kind_of(&plan, step).map_err(|why| unsupported(&why))?;
        if step.inputs.iter().any(|&v| plan.values[v].vtype == ValueType::Int) {
            return Err(unsupported("integer values cannot be computed on"));
        }
        kinds.push(kind);
    }
    if comparison == Comparison::Fss {
        fuse::fuse_relu_truncations(&plan, &mut kinds, revealed);
    }
    fuse::defer_truncations(&plan, &mut kinds, revealed);
    let mut masked_weights: Vec<ValueId> = plan.steps[..run_steps]
        .iter()
        .zip(&kinds)
        .filter(|(_, k)| k.op().masks_operands())
        .flat_map(|(s, _)| s.inputs.iter().copied())
        .filter(|&v| matches!(plan.values[v].source, Source::Weight))
        .collect();
    masked_weights.sort_unstable();
    masked_weights.dedup();
    let mut last_use = vec![None; plan.values.len()];
    for (k, step) in plan.steps[..run_steps].iter().enumerate() {
        for &v in &step.inputs {
            last_use[v] = Some(k);
        }
    }
    for (v, last) in last_use.iter_mut().enumerate() {
        if v == revealed || matches!(plan.values[v].source, Source::Weight) {
            *last = None;
        }
    }
    let revealed_int = plan.values[revealed].vtype == ValueType::Int;
    Ok(Program {
        format: PROGRAM_FORMAT,
        frac_bits: fp.frac_bits,
        comparison,
        plan,
        kinds,
        revealed,
        client_final,
        revealed_frac_bits: if revealed_int { Some(0) } else { None },
        masked_weights,
        last_use,
    })
}

/// The unit that runs `step` on shares, or why none can.
fn kind_of(plan: &Plan, step: &crate::plan::Step) -> Result<Kind, String> {
    let shape = |v: ValueId| plan.values[v].shape.clone();
    if Local::fits(&step.op) {
        return Ok(Kind::Local(Local));
    }
    if let Some(map) = Product::map_of(&step.op) {
        return Ok(Kind::Product(Product { map, truncates: true }));
    }
    if Scaled::fits(&step.op) {
        return Ok(Kind::Scaled(Scaled));
    }
    Ok(match &step.op {
        Op::Relu => Kind::Relu(Relu),
        Op::MaxPool(w) => {
            Kind::Tournament(Tournament::new(Groups::Pool { shape: shape(step.inputs[0]), window: *w }, false))
        }
        Op::Max { axes, .. } => Kind::Tournament(Tournament::new(
            Groups::Reduce { shape: shape(step.inputs[0]), axes: axes.clone() },
            false,
        )),
        Op::ArgMax { axis } if step.output == plan.output => {
            Kind::Tournament(Tournament::new(Groups::Reduce { shape: shape(step.inputs[0]), axes: vec![*axis] }, true))
        }
        Op::ArgMax { .. } => return Err("ArgMax runs securely only as the model's output".into()),
        Op::Sigmoid => Kind::Piecewise(Piecewise { curve: crate::ops::Curve::Sigmoid }),
        Op::Tanh => Kind::Piecewise(Piecewise { curve: crate::ops::Curve::Tanh }),
        Op::Softmax => Kind::Softmax(crate::ops::Softmax),
        Op::Rsqrt => Kind::Rsqrt(crate::ops::Rsqrt),
        Op::CastToInt | Op::CastToFloat => return Err("a cast of a private value is not supported under Pond".into()),
        Op::Unit(u) => {
            let shapes: Vec<&[usize]> = step.inputs.iter().map(|&v| plan.values[v].shape.as_slice()).collect();
            u.def().check_secure(&shapes)?;
            Kind::Unit(u.clone())
        }
        other => return Err(format!("{} has no secure protocol", other.name())),
    })
}

/// The SHA-256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Program {
    pub fn fp(&self) -> FixedPoint {
        FixedPoint { frac_bits: self.frac_bits }
    }

    /// Its serialisation: what a driver sends and a server keeps.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Hex SHA-256 of [`Program::encode`].
    pub fn digest(&self) -> String {
        sha256_hex(&self.encode())
    }

    /// Check a program that came from elsewhere (a driver, a deployment) before
    /// building anything from it: this build's format; a plan whose steps read
    /// values defined before them with the shapes their ops compute; no weight
    /// values; and exactly the program lowering that plan gives here, so that
    /// every unit, fusion and group a party will run follows from checked shapes.
    pub fn check(&self) -> Result<()> {
        if self.format != PROGRAM_FORMAT {
            anyhow::bail!(
                "the secure program is in format {}, this build runs format {PROGRAM_FORMAT}: run one release of \
                 tfe-run on every host",
                self.format
            );
        }
        self.plan.check_consistent().map_err(|e| anyhow::anyhow!("the plan is inconsistent: {e}"))?;
        if !self.plan.weight_values.is_empty() {
            anyhow::bail!("the plan carries weight values");
        }
        let here = lower_with(&self.plan, FixedPoint::new(self.frac_bits)?, self.comparison)?;
        if here.encode() != self.encode() {
            anyhow::bail!("the secure program is not the one its plan lowers to in this build");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{Layout, Padding, Window};
    use crate::plan::{Step, Value};
    use std::collections::BTreeMap;

    /// A plan of steps over client input `x`, each step given as (op, input ids, output shape).
    fn chain(input: &[usize], steps: &[(Op, Vec<ValueId>, Vec<usize>)]) -> Plan {
        let value = |name: String, shape: &[usize], source| Value::float(name, shape, source);
        let mut values = vec![value("x".into(), input, Source::Input { placeholder: "x".into() })];
        let mut plan_steps = Vec::new();
        for (k, (op, inputs, shape)) in steps.iter().enumerate() {
            values.push(value(format!("s{k}"), shape, Source::Step(k)));
            plan_steps.push(Step {
                node: format!("s{k}"),
                op_type: op.name().into(),
                op: op.clone(),
                inputs: inputs.clone(),
                output: k + 1,
            });
        }
        Plan {
            output: values.len() - 1,
            values,
            steps: plan_steps,
            inputs: vec![0],
            output_node: "out".into(),
            weight_values: BTreeMap::new(),
        }
    }

    /// `serve` sized a session only after building its schedule, and the
    /// schedule held a MaxPool's groups, one vector per output element (730 MB
    /// for 8.4M outputs), which the estimate did not count: a MaxPool over a
    /// large image was built in full, then maybe refused. Lowering now keeps only
    /// what the groups are, and the estimate counts them from their sizes.
    #[test]
    fn a_maxpool_is_sized_before_its_groups_are_built() {
        let pool = Window {
            kernel: [2, 2],
            strides: [2, 2],
            dilations: [1, 1],
            padding: Padding::Valid,
            layout: Layout::Nhwc,
        };
        let plan = chain(&[1, 4096, 2048, 4], &[(Op::MaxPool(pool), vec![0], vec![1, 2048, 1024, 4])]);
        let program = lower(&plan, FixedPoint::default()).unwrap();
        let outputs = 2048 * 1024 * 4u64;
        let groups = outputs * (4 * 8 + 24);
        let values = 8 * (4096 * 2048 * 4 + outputs);
        assert!(program.estimate_memory() >= groups + 6 * values, "{}", program.estimate_memory());
        let Kind::Tournament(t) = &program.kinds[0] else { panic!("{:?}", program.kinds[0]) };
        assert!(!t.is_built(), "lowering or sizing built the groups");
        program.check().unwrap();
        assert!(!t.is_built(), "checking built the groups");
    }

    /// The secure environment kept every value to the end of a prediction (the
    /// plaintext run frees each after its last use). Each value's last reader is
    /// now part of the program; what is opened and what is never read stay.
    #[test]
    fn each_value_is_freed_after_its_last_reader() {
        let steps = [
            (Op::Relu, vec![0], vec![2, 3]),   // %1 = relu(x)
            (Op::Neg, vec![1], vec![2, 3]),    // %2 = -%1
            (Op::Add, vec![1, 2], vec![2, 3]), // %3 = %1 + %2
            (Op::Relu, vec![3], vec![2, 3]),   // %4, the output
        ];
        let program = lower(&chain(&[2, 3], &steps), FixedPoint::default()).unwrap();
        assert_eq!(program.last_use, vec![Some(0), Some(2), Some(2), Some(3), None]);
        // With a Sigmoid last, the client applies it: its input is what is opened, kept.
        let mut steps = steps.to_vec();
        steps.push((Op::Sigmoid, vec![4], vec![2, 3]));
        let program = lower(&chain(&[2, 3], &steps), FixedPoint::default()).unwrap();
        assert_eq!(program.revealed, 4);
        assert_eq!(program.last_use, vec![Some(0), Some(2), Some(2), Some(3), None, None]);
    }

    /// A program survives its serialisation unchanged (what `check` compares).
    #[test]
    fn a_program_round_trips_through_its_encoding() {
        let pool =
            Window { kernel: [3, 3], strides: [2, 2], dilations: [1, 1], padding: Padding::Same, layout: Layout::Nhwc };
        let steps = [
            (Op::from(crate::ops::LeakyRelu { alpha: 0.3 }), vec![0], vec![1, 5, 5, 2]),
            (Op::MaxPool(pool), vec![1], vec![1, 3, 3, 2]),
            (Op::Tanh, vec![2], vec![1, 3, 3, 2]),
        ];
        let program = lower(&chain(&[1, 5, 5, 2], &steps), FixedPoint::default()).unwrap();
        let decoded: Program = serde_json::from_slice(&program.encode()).unwrap();
        assert_eq!(decoded.encode(), program.encode());
        assert_eq!(decoded.digest(), program.digest());
        decoded.check().unwrap();
    }

    /// The comparison protocol is part of the program: an FSS program round-trips
    /// and checks as FSS, digests differently, and plans its one-round comparisons
    /// and their dealer keys; a bitwise program serialises as before the choice
    /// existed (no `comparison` key), so its digest is unchanged.
    #[test]
    fn the_comparison_protocol_is_part_of_the_program() {
        let steps = [(Op::Relu, vec![0], vec![2, 3])];
        let plan = chain(&[2, 3], &steps);
        let bitwise = lower(&plan, FixedPoint::default()).unwrap();
        let fss = lower_with(&plan, FixedPoint::default(), Comparison::Fss).unwrap();
        assert!(!String::from_utf8_lossy(&bitwise.encode()).contains("comparison"));
        assert_ne!(bitwise.digest(), fss.digest());
        let decoded: Program = serde_json::from_slice(&fss.encode()).unwrap();
        assert_eq!(decoded.comparison, Comparison::Fss);
        decoded.check().unwrap();
        let planned = fss.planned()[0];
        assert_eq!((planned.bytes, planned.rounds), (8 * 6, 1));
        // Two keys of 1,532 bytes per element (47 levels: a value's width at f = 16) and two correction words.
        assert_eq!(planned.keys, 6 * (2 * 1532 + 16));
        assert_eq!(bitwise.planned()[0].rounds, 8);
        assert_eq!(bitwise.planned()[0].keys, 0);
    }
}
