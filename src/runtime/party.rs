//! The five parties' programs. Each runs in its own thread with only its own state:
//! the servers and the dealer hold the public schedule (no weights), the model owner
//! its weights, the client its inputs.

use std::collections::{BTreeMap, HashMap};
use std::num::Wrapping;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::ProgressBar;
use ndarray::{ArrayD, Axis, IxDyn};

use super::PartyStats;
use super::flow::{Acknowledge, Window};
use super::message::Outside;
use crate::kernels::float;
use crate::lower::{ClientFinal, Program};
use crate::ops::{DealerMasks, ServerMasks, StepCx};
use crate::plan::{Plan, Source, ValueId};
use crate::protocol::mul::Masked;
use crate::protocol::{Dealer, Server, domain};
use crate::ring::{FixedPoint, Prg, RingTensor, StreamKey, Z, from_words, os_seed, to_words};
use crate::tensor::Tensor;
use crate::transport::{Channel, Endpoint, Party, Transport, decode_words, encode_words};

/// A session as each of its party threads sees it, whatever program it runs (a
/// lowered prediction program or training): the transport, the session's id,
/// and how long to wait for any one message.
#[derive(Clone)]
pub struct Session {
    pub transport: Arc<dyn Transport>,
    pub id: u64,
    pub timeout: Duration,
}

impl Session {
    /// Party `me`'s counted endpoint of this session.
    pub fn endpoint(&self, me: Party) -> Endpoint {
        Endpoint::new(me, Arc::clone(&self.transport), self.id, self.timeout)
    }
}

/// What every party thread of a prediction session starts with.
#[derive(Clone)]
pub struct Context {
    pub session: Session,
    /// The lowered program every party runs (built or checked once).
    pub program: Arc<Program>,
}

/// What a party's program hands back: its statistics (sent to the driver in the
/// remote mode) and, for the client, the outputs (never sent anywhere).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub stats: PartyStats,
    #[serde(skip)]
    pub outputs: Vec<Tensor>,
    pub layer_time: BTreeMap<usize, Duration>,
    pub setup: Duration,
}

fn endpoint(ctx: &Context, me: Party) -> Endpoint {
    ctx.session.endpoint(me)
}

/// A party's statistics from its channel's counters.
pub(crate) fn finish(net: &dyn Channel, busy: Duration, expanded: u64) -> PartyStats {
    let (total, per_layer) = net.traffic();
    PartyStats { traffic: total.clone(), per_layer: per_layer.clone(), busy, expanded_words: expanded }
}

/// Say where the following traffic belongs: prediction (or training step)
/// `seq`, and `layer` (a plan step, a training phase; `None`: outside every
/// layer). The runtime's, not the protocol's: per-layer counts are what the
/// program planned, and only the runtime knows the program.
pub(crate) fn attribute(net: &mut dyn Channel, seq: u32, layer: Option<usize>) {
    net.set_seq(seq);
    net.set_layer(layer);
}

/// The crypto producer draws both servers' seeds and sends each its own (the
/// one message it ever sends server 0).
pub(crate) fn deal_seeds(net: &mut dyn Channel) -> Result<[[u8; 32]; 2]> {
    let seeds = [os_seed()?, os_seed()?];
    attribute(net, 0, None);
    net.send(Party::Server0, Outside::Seeds.step(), 0, seeds[0].to_vec())?;
    net.send(Party::Server1, Outside::Seeds.step(), 0, seeds[1].to_vec())?;
    Ok(seeds)
}

/// A server's seed from the crypto producer.
pub(crate) fn server_seed(net: &mut dyn Channel) -> Result<[u8; 32]> {
    attribute(net, 0, None);
    recv_seed(net, Party::Dealer, Outside::Seeds.step(), 0)
}

/// A program's step count, refused where it would reach the message steps
/// outside every program ([`Outside::FIRST`]).
pub(crate) fn check_steps(steps: usize) -> Result<()> {
    if steps > Outside::FIRST as usize {
        anyhow::bail!("a program of {steps} steps: at most {}", Outside::FIRST);
    }
    Ok(())
}

/// The party machinery around a server's program steps, the same for every
/// program (a plan's steps; training's steps of three phases): the protocol's
/// cursor, which layer the traffic belongs to, the layer's clock, and flow
/// control. A layer is the cursor's step: a plan step, a training phase.
#[derive(Default)]
pub(crate) struct ServerSteps {
    acks: Acknowledge,
    pub layer_time: BTreeMap<usize, Duration>,
}

impl ServerSteps {
    /// Run `work` as layer `layer` of prediction (or training step) `seq`.
    pub(crate) fn layer<T>(
        &mut self,
        s: &mut Server,
        seq: u32,
        layer: usize,
        work: impl FnOnce(&mut Server) -> Result<T>,
    ) -> Result<T> {
        s.begin(seq, layer as u32);
        attribute(&mut *s.net, seq, Some(layer));
        let clock = Instant::now();
        let out = work(s);
        *self.layer_time.entry(layer).or_default() += clock.elapsed();
        attribute(&mut *s.net, seq, None);
        out
    }

    /// A program step is done: server 1 counts it for the dealer ([`super::flow`]).
    pub(crate) fn done(&mut self, s: &mut Server) -> Result<()> {
        if s.is_first() {
            return Ok(());
        }
        self.acks.step_done(&mut *s.net)
    }
}

/// The same machinery for the crypto producer: flow control before each
/// program step, then the cursor and attribution of each layer it deals.
#[derive(Default)]
pub(crate) struct DealerSteps {
    window: Window,
    dealt: u64,
    /// Time spent waiting for server 1 (not offline work).
    pub waited: Duration,
}

impl DealerSteps {
    /// Before dealing the next program step: wait while the dealer is the bound
    /// ahead of server 1.
    pub(crate) fn next(&mut self, d: &mut Dealer) -> Result<()> {
        let clock = Instant::now();
        self.window.before(&mut *d.net, self.dealt)?;
        self.waited += clock.elapsed();
        self.dealt += 1;
        Ok(())
    }

    /// Deal layer `layer` of prediction (or training step) `seq` next.
    pub(crate) fn layer(&mut self, d: &mut Dealer, seq: u32, layer: usize) {
        d.begin(seq, layer as u32);
        attribute(&mut *d.net, seq, Some(layer));
    }

    /// After the last step: read server 1's last acknowledgements.
    pub(crate) fn finish(&mut self, d: &mut Dealer) -> Result<()> {
        attribute(&mut *d.net, 0, None);
        self.window.drain(&mut *d.net, self.dealt)
    }
}

/// Receive both servers' shares of a value (message `step`, tag 0) and add them:
/// how the client opens its output, and the model owner a trained model.
pub(crate) fn reconstruct(net: &mut dyn Channel, step: u32, shape: &[usize]) -> Result<RingTensor> {
    let n = shape.iter().product();
    let mut sum = RingTensor::zeros(IxDyn(shape));
    for server in [Party::Server0, Party::Server1] {
        let words = decode_words(&net.recv(server, step, 0)?, n, server)?;
        sum.iter_mut().zip(words).for_each(|(s, w)| *s += Wrapping(w));
    }
    Ok(sum)
}

pub(crate) fn recv_seed(net: &mut dyn Channel, from: Party, step: u32, tag: u32) -> Result<[u8; 32]> {
    let bytes = net.recv(from, step, tag)?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| anyhow::anyhow!("{} sent a seed of {} bytes instead of 32", from.name(), b.len()))
}

/// Value ids fit in u32: [`crate::lower::lower`] refuses larger plans.
fn sharing_stream(seq: u32, id: ValueId) -> StreamKey {
    StreamKey { domain: domain::SHARING, seq, id: id as u32, tag: 0 }
}

/// One owner's sharing of its values (a client's inputs, the model owner's
/// weights, a data owner's rows): server 0 gets a seed and expands its shares
/// from it; server 1 gets value − share. Neither learns anything from its share
/// alone.
pub(crate) struct Sharing {
    seed: [u8; 32],
}

impl Sharing {
    /// Draw the owner's seed and send it to server 0 (message `seed_tag` of `seq`).
    pub(crate) fn start(net: &mut dyn Channel, seq: u32, seed_tag: u32) -> Result<Sharing> {
        let seed = os_seed()?;
        attribute(net, seq, None);
        net.send(Party::Server0, Outside::Shares.step(), seed_tag, seed.to_vec())?;
        Ok(Sharing { seed })
    }

    /// Send server 1 its shares of one part (`len` values, server 0's from
    /// `stream`) under `tag`, encoded straight into the message, server 0's
    /// shares expanded a chunk at a time: the owner's values are never held
    /// again in another form.
    pub(crate) fn part(
        &self,
        net: &mut dyn Channel,
        stream: StreamKey,
        tag: u32,
        mut values: impl Iterator<Item = Z>,
        len: usize,
    ) -> Result<()> {
        let mut prg = Prg::derive(&self.seed, stream);
        let mut message = Vec::with_capacity(len * 8);
        let mut left = len;
        while left > 0 {
            let chunk = left.min(1 << 16);
            for (share0, value) in prg.words(chunk).into_iter().zip(values.by_ref()) {
                message.extend_from_slice(&(value - Wrapping(share0)).0.to_le_bytes());
            }
            left -= chunk;
        }
        net.send(Party::Server1, Outside::Shares.step(), tag, message)
    }
}

/// One part a server receives of an owner's sharing: server 0's stream, server
/// 1's message tag, and its shape.
pub(crate) struct Part<'a> {
    pub stream: StreamKey,
    pub tag: u32,
    pub shape: &'a [usize],
}

/// A server receives its shares of an owner's parts ([`Sharing`]). Server 0
/// expands them from the owner's seed: not material, so not counted as what the
/// dealer would have sent.
pub(crate) fn receive_parts(
    net: &mut dyn Channel,
    first: bool,
    owner: Party,
    seq: u32,
    seed_tag: u32,
    parts: &[Part<'_>],
) -> Result<Vec<RingTensor>> {
    attribute(net, seq, None);
    if first {
        let seed = recv_seed(net, owner, Outside::Shares.step(), seed_tag)?;
        Ok(parts.iter().map(|p| Prg::derive(&seed, p.stream).tensor(p.shape)).collect())
    } else {
        parts
            .iter()
            .map(|p| {
                let bytes = net.recv(owner, Outside::Shares.step(), p.tag)?;
                Ok(from_words(p.shape, decode_words(&bytes, p.shape.iter().product(), owner)?))
            })
            .collect()
    }
}

/// An owner shares plan values of prediction `seq` (0: the weights).
fn share_values(net: &mut dyn Channel, seq: u32, values: &[(ValueId, RingTensor)]) -> Result<()> {
    let sharing = Sharing::start(net, seq, 0)?;
    for (id, value) in values {
        sharing.part(net, sharing_stream(seq, *id), *id as u32 + 1, value.iter().copied(), value.len())?;
    }
    Ok(())
}

/// A server receives its shares of plan values from their owner.
fn receive_shares(
    net: &mut dyn Channel,
    first: bool,
    owner: Party,
    seq: u32,
    ids: &[ValueId],
    shapes: &[Vec<usize>],
) -> Result<Vec<RingTensor>> {
    let parts: Vec<Part<'_>> = ids
        .iter()
        .zip(shapes)
        .map(|(&id, shape)| Part { stream: sharing_stream(seq, id), tag: id as u32 + 1, shape })
        .collect();
    receive_parts(net, first, owner, seq, 0, &parts)
}

/// A server's shares of the model's weights.
pub type WeightShares = HashMap<ValueId, RingTensor>;

/// Where a server's weight shares come from.
pub enum Weights {
    /// The model owner shares them at the start of the session.
    FromOwner,
    /// Kept from an earlier deployment.
    Held(Arc<WeightShares>),
}

/// A server's part of a deployment: receive the weight shares from the model
/// owner and keep them for later sessions.
pub fn receive_weights(ctx: &Context, i: usize) -> Result<(WeightShares, Report)> {
    let plan = &ctx.program.plan;
    let mut net = endpoint(ctx, Party::server(i));
    let start = Instant::now();
    let ids: Vec<ValueId> = plan.weights().map(|(id, _)| id).collect();
    let shapes: Vec<Vec<usize>> = ids.iter().map(|&id| plan.values[id].shape.clone()).collect();
    let shares = receive_shares(&mut net, i == 0, Party::ModelOwner, 0, &ids, &shapes)?;
    // A deployment's report has always counted server 0's expansion of the
    // owner's sharing (there is no dealer in a deployment).
    let expanded = if i == 0 { shares.iter().map(|s| s.len() as u64).sum() } else { 0 };
    let report = Report { stats: finish(&net, start.elapsed(), expanded), ..Report::default() };
    Ok((ids.into_iter().zip(shares).collect(), report))
}

pub fn server(
    ctx: &Context,
    i: usize,
    predictions: usize,
    progress: Option<&ProgressBar>,
    weights: Weights,
) -> Result<Report> {
    let program = &ctx.program;
    let plan = &program.plan;
    let fp = program.fp();
    check_steps(program.kinds.len())?;
    let mut net = endpoint(ctx, Party::server(i));
    let seed = server_seed(&mut net)?;
    let mut s = Server::new(i, net, seed);
    s.comparison = program.comparison;
    let mut report = Report::default();
    let mut steps = ServerSteps::default();
    let predictions = super::prediction_count(predictions)?;

    // Set-up: the weights' shares, then their masked values opened once.
    let setup_start = Instant::now();
    let weights: Arc<WeightShares> = match weights {
        Weights::Held(shares) => shares,
        Weights::FromOwner => {
            let weight_ids: Vec<ValueId> = plan.weights().map(|(id, _)| id).collect();
            let shapes: Vec<Vec<usize>> = weight_ids.iter().map(|&id| plan.values[id].shape.clone()).collect();
            let first = s.is_first();
            let shares = receive_shares(&mut *s.net, first, Party::ModelOwner, 0, &weight_ids, &shapes)?;
            Arc::new(weight_ids.into_iter().zip(shares).collect())
        }
    };
    for (id, _) in plan.weights() {
        if weights.get(&id).is_none_or(|w| w.shape() != plan.values[id].shape.as_slice()) {
            anyhow::bail!(
                "{} holds no share of weight `{}` of its shape",
                Party::server(i).name(),
                plan.values[id].name
            );
        }
    }
    s.begin(0, Outside::Setup.step());
    attribute(&mut *s.net, 0, None);
    let mask_shares: Vec<RingTensor> =
        program.masked_weights.iter().map(|&w| s.mask(0, w as u32, &plan.values[w].shape)).collect();
    let diffs: Vec<RingTensor> =
        program.masked_weights.iter().zip(&mask_shares).map(|(w, m)| &weights[w] - m).collect();
    let opened = s.open(&diffs.iter().collect::<Vec<_>>())?;
    let mut masks = ServerMasks {
        weights: program
            .masked_weights
            .iter()
            .zip(mask_shares.into_iter().zip(opened))
            .map(|(&w, (mask, opened))| (w, Masked { mask, opened }))
            .collect(),
        activations: HashMap::new(),
    };
    report.setup = setup_start.elapsed();

    for seq in 1..=predictions {
        attribute(&mut *s.net, seq, None);
        let start = Instant::now();
        // This prediction's shares; the weights' are read where they are held.
        let mut env: Vec<Option<RingTensor>> = vec![None; plan.values.len()];
        let shapes: Vec<Vec<usize>> = plan.inputs.iter().map(|&id| plan.values[id].shape.clone()).collect();
        let first = s.is_first();
        let inputs = receive_shares(&mut *s.net, first, Party::Client, seq, &plan.inputs, &shapes)?;
        for (&id, x) in plan.inputs.iter().zip(inputs) {
            env[id] = Some(x);
        }
        masks.activations.clear();
        for (k, kind) in program.kinds.iter().enumerate() {
            let step = &plan.steps[k];
            let cx = StepCx { plan, step, fp, seq };
            let ins: Vec<&RingTensor> = step
                .inputs
                .iter()
                .map(|&v| env[v].as_ref().or_else(|| weights.get(&v)).expect("inputs computed before"))
                .collect();
            let out = steps.layer(&mut s, seq, k, |s| kind.op().run(s, &cx, &mut masks, &ins))?;
            env[step.output] = Some(out);
            // Free what no later step reads, as the plaintext run does.
            for &v in &step.inputs {
                if program.last_use[v] == Some(k) {
                    env[v] = None;
                    masks.activations.remove(&v);
                }
            }
            steps.done(&mut s)?;
            if let Some(bar) = progress {
                bar.set_message(step.node.clone());
                bar.inc(1);
            }
        }
        attribute(&mut *s.net, seq, None);
        let revealed = match env[program.revealed].take() {
            Some(v) => v,
            None => weights.get(&program.revealed).cloned().expect("revealed value computed"),
        };
        let out = if program.client_final == Some(ClientFinal::Softmax) { shift_by_first(&revealed) } else { revealed };
        s.net.send(Party::Client, Outside::Output.step(), 0, encode_words(&to_words(&out)))?;
        // The dealer ran beside this prediction; its end marker says that it dealt
        // no more than the plan used.
        s.net.recv(Party::Dealer, Outside::OfflineDone.step(), 0)?;
        report.stats.busy += start.elapsed();
    }
    let busy = report.stats.busy;
    report.layer_time = steps.layer_time;
    report.stats = finish(&*s.net, busy, s.expanded_words());
    Ok(report)
}

/// z − z[…, 0]: softmax is shift-invariant, and these differences reveal nothing
/// the softmax output does not.
fn shift_by_first(z: &RingTensor) -> RingTensor {
    let last = Axis(z.ndim() - 1);
    let first = z.index_axis(last, 0).insert_axis(last).to_owned();
    z - &first
}

pub fn dealer(ctx: &Context, predictions: usize) -> Result<Report> {
    let program = &ctx.program;
    let plan = &program.plan;
    let fp = program.fp();
    let predictions = super::prediction_count(predictions)?;
    check_steps(program.kinds.len())?;
    let mut net = endpoint(ctx, Party::Dealer);
    let seeds = deal_seeds(&mut net)?;
    let mut d = Dealer::new(net, seeds);
    d.comparison = program.comparison;
    let mut steps = DealerSteps::default();
    let mut masks = DealerMasks {
        weights: program.masked_weights.iter().map(|&w| (w, d.mask(0, w as u32, &plan.values[w].shape))).collect(),
        activations: HashMap::new(),
    };
    let mut busy = Duration::ZERO;
    for seq in 1..=predictions {
        let start = Instant::now();
        masks.activations.clear();
        for (k, kind) in program.kinds.iter().enumerate() {
            let step = &plan.steps[k];
            steps.next(&mut d)?;
            steps.layer(&mut d, seq, k);
            kind.op().deal(&mut d, &StepCx { plan, step, fp, seq }, &mut masks)?;
            for &v in &step.inputs {
                if program.last_use[v] == Some(k) {
                    masks.activations.remove(&v);
                }
            }
        }
        attribute(&mut *d.net, seq, None);
        d.net.send(Party::Server0, Outside::OfflineDone.step(), 0, vec![])?;
        d.net.send(Party::Server1, Outside::OfflineDone.step(), 0, vec![])?;
        busy += start.elapsed();
    }
    steps.finish(&mut d)?;
    // The offline phase's work, not its waits for server 1.
    Ok(Report { stats: finish(&*d.net, busy.saturating_sub(steps.waited), 0), ..Report::default() })
}

/// The plan's weights with what an error calls them.
fn weights_of<'a>(
    plan: &Plan,
    weights: &'a BTreeMap<ValueId, ArrayD<f32>>,
) -> Result<Vec<(ValueId, &'a ArrayD<f32>, String)>> {
    plan.weights()
        .map(|(id, value)| {
            let w = weights
                .get(&id)
                .ok_or_else(|| anyhow::anyhow!("the model owner has no value for weight `{}`", value.name))?;
            Ok((id, w, format!("weight `{}`", value.name)))
        })
        .collect()
}

/// The plan's inputs of one batch with what an error calls them.
fn inputs_of<'a>(
    plan: &Plan,
    inputs: &'a BTreeMap<String, ArrayD<f32>>,
) -> Result<Vec<(ValueId, &'a ArrayD<f32>, String)>> {
    plan.inputs
        .iter()
        .map(|&id| {
            let Source::Input { placeholder } = &plan.values[id].source else {
                unreachable!("plan inputs are placeholders")
            };
            let x =
                inputs.get(placeholder).ok_or_else(|| anyhow::anyhow!("no input for placeholder `{placeholder}`"))?;
            Ok((id, x, format!("input for `{placeholder}`")))
        })
        .collect()
}

/// Refuse weights (if given) and inputs outside the fixed-point range before
/// any session opens: inside it, the failing party could only abort a session
/// the servers had started on.
pub fn check_values(
    plan: &Plan,
    fp: FixedPoint,
    weights: Option<&BTreeMap<ValueId, ArrayD<f32>>>,
    batches: &[BTreeMap<String, ArrayD<f32>>],
) -> Result<()> {
    if let Some(weights) = weights {
        for (_, w, what) in weights_of(plan, weights)? {
            fp.check_range(w.iter(), &what)?;
        }
    }
    for inputs in batches {
        for (_, x, what) in inputs_of(plan, inputs)? {
            fp.check_range(x.iter(), &what)?;
        }
    }
    Ok(())
}

pub fn model_owner(ctx: &Context, weights: &BTreeMap<ValueId, ArrayD<f32>>) -> Result<Report> {
    let plan = &ctx.program.plan;
    let fp = ctx.program.fp();
    let mut net = endpoint(ctx, Party::ModelOwner);
    let start = Instant::now();
    let mut encoded = Vec::new();
    for (id, w, what) in weights_of(plan, weights)? {
        encoded.push((id, fp.encode(w, &what)?));
    }
    share_values(&mut net, 0, &encoded)?;
    Ok(Report { stats: finish(&net, start.elapsed(), 0), ..Report::default() })
}

/// Why a secure output outside the fixed-point range is refused.
pub const OUTPUT_OUT_OF_RANGE: &str = "a value inside the computation left the fixed-point range, so the result \
     would be wrong (fewer --frac-bits widen the range; --plaintext names the node where values leave it)";

pub fn client(ctx: &Context, batches: &[BTreeMap<String, ArrayD<f32>>]) -> Result<Report> {
    let sched = &ctx.program;
    let plan = &sched.plan;
    let fp = sched.fp();
    let mut net = endpoint(ctx, Party::Client);
    let mut report = Report::default();
    let count = super::prediction_count(batches.len())?;
    for (seq, inputs) in (1..=count).zip(batches) {
        let start = Instant::now();
        let mut encoded = Vec::new();
        for (id, x, what) in inputs_of(plan, inputs)? {
            encoded.push((id, fp.encode(x, &what)?));
        }
        share_values(&mut net, seq, &encoded)?;
        let opened = reconstruct(&mut net, Outside::Output.step(), &plan.values[sched.revealed].shape)?;
        let output = match (sched.revealed_frac_bits, sched.client_final) {
            (Some(0), _) => Tensor::Int(opened.mapv(|v: Z| v.0 as i64)),
            (_, final_op) => {
                let x = fp.decode(&opened);
                // Every value of a correct run is inside the range, the output
                // too: one outside it can only come from a value inside the
                // computation that left the range, where truncations and
                // comparisons go wrong. Refuse it rather than print it (an
                // output inside the range is no proof, `--plaintext` shows
                // where values go). The client owns the output: only its own
                // user sees the value.
                fp.check_range(x.iter(), &format!("the secure output of `{}`", plan.output_node))
                    .map_err(|e| e.context(OUTPUT_OUT_OF_RANGE))?;
                Tensor::Float(match final_op {
                    Some(ClientFinal::Softmax) => float::softmax(&x),
                    Some(ClientFinal::Sigmoid) => float::sigmoid(&x),
                    None => x,
                })
            }
        };
        report.outputs.push(output);
        report.stats.busy += start.elapsed();
    }
    let busy = report.stats.busy;
    report.stats = finish(&net, busy, 0);
    Ok(report)
}
