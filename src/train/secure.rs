//! The training run's parties: the data owners, the two servers, the crypto
//! producer and the model owner, each with only its own state.
//!
//! * Each **data owner** (playing the client role) secret-shares its rows:
//!   server 0 gets a seed, server 1 the rows minus the seed's expansion.
//! * The **servers** append the public ones column, mask the whole training set
//!   once and open it masked (X − A: uniform, reveals nothing). Every later product
//!   with a batch of rows reuses that mask (SecureML's trick, and tf-encrypted's
//!   generalised triples): per step only the fresh masked W and the fresh masked
//!   residual p − y cross the wire, besides the truncations and the sigmoid.
//! * The **crypto producer** deals each step's material: the triples A_B·B_W and
//!   A_Bᵀ·B_r whose shapes match the products, truncation pairs, and the
//!   comparisons of the piecewise sigmoid. It never sees a value.
//! * The **model owner** receives each epoch's summed loss (one number) and, at the
//!   end, the trained weights: the only values ever reconstructed.
//!
//! A step, on shares (f fractional bits; P from [`TrainSpec::update_bits`]):
//!
//! ```text
//! forward:   open W − B_W;   z = trunc_f(X'_B W)
//! sigmoid:   p, softplus(z) = piecewise(z)   (one batch of comparisons for both)
//!            loss += Σ softplus(z) − y·z
//! gradient:  open r − B_r, r = p − y;   W −= trunc_{f+P}(c · X'_Bᵀ r),  c = round(lr/|B|·2^P)
//! ```

use std::num::Wrapping;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use ndarray::{ArrayD, Axis, IxDyn};

use super::{DatasetInfo, Model, OwnerData, TrainSpec, Trained};
use crate::protocol::compare::{Piecewise, deal_piecewise_many, piecewise_many, piecewise_many_cost};
use crate::protocol::mul::{
    Bilinear, Masked, deal_mul_pairs, deal_product, mul_pairs, mul_pairs_cost, open_cost, product,
};
use crate::protocol::trunc::{deal_truncate, truncate, truncate_cost};
use crate::protocol::{Cost, Dealer, Server, domain};
use crate::ring::{FixedPoint, RingTensor, StreamKey, os_seed, to_words};
use crate::runtime::message::Outside;
use crate::runtime::party::{
    DealerSteps, Part, Report, ServerSteps, Session, Sharing, attribute, deal_seeds, finish, receive_parts,
    reconstruct, server_seed,
};
use crate::runtime::{PartyStats, SecureConfig, Stats, reports, spawn_party};
use crate::tensor::Tensor;
use crate::transport::{Channel, InProcess, Party, Transport, encode_words};

/// The phases of a step: message steps 0, 1, 2, and the rows of `--stats`.
pub const PHASES: [&str; 3] = ["forward (X·W)", "sigmoid and loss", "gradient and update"];

/// What the formulas predict server 0 (and server 1) sends, and its rounds, in
/// each phase over the whole run: the sums of the primitives' own costs. A step
/// over `rows` rows (n = rows·k, d' = d + 1):
///
/// * forward: W − B_W (d'·k words) and the truncation of z (n): 2 rounds;
/// * sigmoid and loss: the piecewise sigmoid and softplus together (25
///   breakpoints' DReLUs, u², u³, two functions' coefficient products and their
///   truncation), then y·z (2n): 8 + 6 + 1 rounds;
/// * gradient and update: r − B_r (n) and the truncation of the update (d'·k): 2 rounds.
///
/// Every epoch has the same batch sizes (shuffled or not): full batches and a
/// last one of the remaining rows.
pub fn planned(spec: &TrainSpec) -> [Cost; 3] {
    let breaks = Piecewise::sigmoid().breaks.len();
    let width = Piecewise::sigmoid().width(FixedPoint { frac_bits: spec.frac_bits });
    let w = (spec.features + 1) * spec.outputs;
    let step = |rows: usize| {
        let n = rows * spec.outputs;
        [
            open_cost(w) + truncate_cost(n),
            piecewise_many_cost(spec.comparison, n, breaks, 2, width) + mul_pairs_cost(&[n]),
            open_cost(n) + truncate_cost(w),
        ]
    };
    let batch = spec.batch_size.max(1);
    let (full, rest) = (spec.rows() / batch, spec.rows() % batch);
    let mut total = [Cost::ZERO; 3];
    for (rows, count) in [(batch, full), (rest, usize::from(rest > 0))] {
        for (t, p) in total.iter_mut().zip(step(rows)) {
            *t = *t + p.times((count * spec.epochs) as u64);
        }
    }
    total
}

/// Mask ids: the training set (set-up), W and the residual (every step).
const MASK_X: u32 = 0;
const MASK_W: u32 = 1;
const MASK_R: u32 = 2;

const FORWARD: Bilinear = Bilinear::MatMul { transpose_a: false, transpose_b: false };
const GRADIENT: Bilinear = Bilinear::MatMul { transpose_a: true, transpose_b: false };

/// What a secure training run produced.
pub struct TrainOutcome {
    pub trained: Trained,
    pub stats: Stats,
    /// Traffic of every data owner, in order.
    pub owners: Vec<PartyStats>,
}

fn rows_of(t: &RingTensor, rows: &[usize]) -> RingTensor {
    t.select(Axis(0), rows)
}

/// `part` 0: the features, 1: the labels. Owners are fewer than
/// [`super::MAX_OWNERS`] (checked with the spec), so `owner` fits.
fn owner_stream(owner: usize, part: u32) -> StreamKey {
    StreamKey { domain: domain::SHARING, seq: 0, id: owner as u32, tag: part }
}

/// Refuse an owner's features outside the fixed-point range, before any
/// session opens (see [`crate::runtime::party::check_values`]).
pub fn check_owner(fp: FixedPoint, data: &OwnerData) -> Result<()> {
    fp.check_range(data.features.iter(), &format!("features `{}`", data.name))
}

/// A data owner: share its features (fixed point) and labels (0/1 as ring
/// integers, so that y·z needs no truncation) with the servers.
pub fn data_owner(ctx: &Session, fp: FixedPoint, index: usize, data: &OwnerData) -> Result<Report> {
    let mut net = ctx.endpoint(Party::Client);
    let start = Instant::now();
    check_owner(fp, data)?;
    let tag = 3 * index as u32;
    let sharing = Sharing::start(&mut net, 0, tag)?;
    let features = data.features.iter().map(|&v| fp.encode_value(f64::from(v)));
    sharing.part(&mut net, owner_stream(index, 0), tag + 1, features, data.features.len())?;
    let labels = data.labels.iter().map(|&v| Wrapping(v as u64));
    sharing.part(&mut net, owner_stream(index, 1), tag + 2, labels, data.labels.len())?;
    Ok(Report { stats: finish(&net, start.elapsed(), 0), ..Report::default() })
}

/// A server's shares of a data set it keeps for training (`tfe-run contribute`).
#[derive(Debug)]
pub struct HeldShares {
    pub info: DatasetInfo,
    /// [rows, features], fixed point.
    pub x: RingTensor,
    /// [rows, outputs], integers 0/1.
    pub y: RingTensor,
}

/// A server receives owner `j`'s shares (`rows` rows, as `info` describes them).
fn receive_owner(net: &mut dyn Channel, first: bool, j: usize, info: &DatasetInfo) -> Result<(RingTensor, RingTensor)> {
    let tag = 3 * j as u32;
    let shapes = [[info.rows, info.features], [info.rows, info.outputs]];
    let parts = [0, 1].map(|p| Part { stream: owner_stream(j, p), tag: tag + 1 + p, shape: &shapes[p as usize] });
    let [x, y]: [RingTensor; 2] = receive_parts(net, first, Party::Client, 0, tag, &parts)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("two parts of data owner {j} expected"))?;
    Ok((x, y))
}

/// A server's part of a contribution: receive the owner's shares, to keep.
pub fn receive_contribution(ctx: &Session, i: usize, info: DatasetInfo) -> Result<(HeldShares, Report)> {
    let mut net = ctx.endpoint(Party::server(i));
    let start = Instant::now();
    let (x, y) = receive_owner(&mut net, i == 0, 0, &info)?;
    Ok((HeldShares { info, x, y }, Report { stats: finish(&net, start.elapsed(), 0), ..Report::default() }))
}

/// A server's shares of all owners' rows: X' ([N, d+1], with the public ones
/// column) and Y ([N, k], integers). The held data sets come first.
fn receive_rows(s: &mut Server, spec: &TrainSpec, held: &[Arc<HeldShares>]) -> Result<(RingTensor, RingTensor)> {
    let (d, k) = (spec.features, spec.outputs);
    // Written in place, owner by owner: the training set is the largest thing a
    // server holds, so it is never copied whole.
    let one = if s.is_first() { spec.fp().encode_value(1.0) } else { Wrapping(0) };
    let mut x = RingTensor::from_elem(IxDyn(&[spec.rows(), d + 1]), one);
    let mut y = RingTensor::zeros(IxDyn(&[spec.rows(), k]));
    let mut at = 0;
    for (j, &n) in spec.owners.iter().enumerate() {
        let rows = ndarray::Slice::from(at..at + n);
        let mut place = |xj: &RingTensor, yj: &RingTensor| {
            x.slice_axis_mut(Axis(0), rows).slice_axis_mut(Axis(1), ndarray::Slice::from(..d)).assign(xj);
            y.slice_axis_mut(Axis(0), rows).assign(yj);
        };
        match held.get(j) {
            Some(h) => place(&h.x, &h.y),
            None => {
                let first = s.is_first();
                let (xj, yj) = receive_owner(&mut *s.net, first, j, &DatasetInfo::of_owner(spec, n))?;
                place(&xj, &yj);
            }
        }
        at += n;
    }
    Ok((x, y))
}

/// Server `i`'s program.
///
/// `held`: this server's shares of the spec's held data sets, in order.
pub fn server(
    ctx: &Session,
    spec: &TrainSpec,
    i: usize,
    on_step: Option<&(dyn Fn() + Sync)>,
    held: &[Arc<HeldShares>],
) -> Result<Report> {
    let fp = spec.fp();
    let f = fp.frac_bits;
    let (d1, k) = (spec.features + 1, spec.outputs);
    let per_epoch = spec.steps_per_epoch();
    let bits = spec.update_bits()?;
    let (sigmoid, softplus) = (Piecewise::sigmoid(), Piecewise::softplus());
    let mut net = ctx.endpoint(Party::server(i));
    let seed = server_seed(&mut net)?;
    let mut s = Server::new(i, net, seed);
    s.comparison = spec.comparison;
    let mut report = Report::default();
    let mut steps = ServerSteps::default();
    let start = Instant::now();

    if held.len() != spec.held.len() {
        anyhow::bail!("{} holds {} of the {} data sets named", Party::server(i).name(), held.len(), spec.held.len());
    }
    let (x, y) = receive_rows(&mut s, spec, held)?;
    s.begin(0, Outside::Setup.step());
    attribute(&mut *s.net, 0, None);
    let mask_x = s.mask(0, MASK_X, x.shape());
    // From here on the rows enter products only through their mask and the
    // masked opening: the share itself is not needed.
    let masked = x - &mask_x;
    let opened_x = s.open(&[&masked])?.remove(0);
    drop(masked);
    report.setup = start.elapsed();

    let mut w = RingTensor::zeros(IxDyn(&[d1, k]));
    let mut loss = Wrapping(0u64);
    let one = Wrapping(1u64 << f);
    for (t0, rows) in spec.steps() {
        let t = t0 as u32 + 1;
        let b = rows.len();
        let xb = Masked { mask: rows_of(&mask_x, &rows), opened: rows_of(&opened_x, &rows) };
        let yb = rows_of(&y, &rows);

        let z = steps.layer(&mut s, t, 0, |s| {
            let mask_w = s.mask(t, MASK_W, &[d1, k]);
            let opened_w = s.open(&[&(&w - &mask_w)])?.remove(0);
            let z = product(s, &FORWARD, &xb, &Masked { mask: mask_w, opened: opened_w }, &[b, k])?;
            truncate(s, &z, f)
        })?;
        let p = steps.layer(&mut s, t, 1, |s| {
            let mut both = piecewise_many(s, &z, &[&sigmoid, &softplus], fp)?;
            let (p, softplus_z) = (both.remove(0), both.remove(0));
            let yz = mul_pairs(s, &[(&yb, &z)])?.remove(0);
            loss += (softplus_z - yz).sum();
            Ok(p)
        })?;
        let update = steps.layer(&mut s, t, 2, |s| {
            let r = &p - &yb.mapv(|v| v * one);
            let mask_r = s.mask(t, MASK_R, r.shape());
            let opened_r = s.open(&[&(&r - &mask_r)])?.remove(0);
            let g = product(s, &GRADIENT, &xb, &Masked { mask: mask_r, opened: opened_r }, &[d1, k])?;
            let c = Wrapping(spec.update_factor(b, bits));
            truncate(s, &g.mapv(|v| v * c), f + bits)
        })?;
        w = w - update;

        if (t0 + 1) % per_epoch == 0 {
            attribute(&mut *s.net, ((t0 + 1) / per_epoch) as u32, None);
            s.net.send(Party::ModelOwner, Outside::Loss.step(), 0, encode_words(&[loss.0]))?;
            loss = Wrapping(0);
        }
        steps.done(&mut s)?;
        if let Some(step) = on_step {
            step();
        }
    }
    attribute(&mut *s.net, 0, None);
    s.net.send(Party::ModelOwner, Outside::Trained.step(), 0, encode_words(&to_words(&w)))?;
    report.layer_time = steps.layer_time;
    report.stats = finish(&*s.net, start.elapsed(), s.expanded_words());
    Ok(report)
}

/// The crypto producer's program: every step's material, in the servers' order.
pub fn dealer(ctx: &Session, spec: &TrainSpec) -> Result<Report> {
    let fp = spec.fp();
    let (d1, k) = (spec.features + 1, spec.outputs);
    let bits = spec.update_bits()?;
    let sigmoid = Piecewise::sigmoid();
    let mut net = ctx.endpoint(Party::Dealer);
    let seeds = deal_seeds(&mut net)?;
    let mut d = Dealer::new(net, seeds);
    d.comparison = spec.comparison;
    let mut busy = Duration::ZERO;
    let mask_x = d.mask(0, MASK_X, &[spec.rows(), d1]);
    let mut steps = DealerSteps::default();
    for (t0, rows) in spec.steps() {
        steps.next(&mut d)?;
        let start = Instant::now();
        let t = t0 as u32 + 1;
        let b = rows.len();
        let mask_b = rows_of(&mask_x, &rows);
        steps.layer(&mut d, t, 0);
        let mask_w = d.mask(t, MASK_W, &[d1, k]);
        deal_product(&mut d, &FORWARD, &mask_b, &mask_w)?;
        deal_truncate(&mut d, &[b, k], fp.frac_bits)?;
        steps.layer(&mut d, t, 1);
        deal_piecewise_many(&mut d, &[b, k], 2, &sigmoid, fp)?;
        deal_mul_pairs(&mut d, &[&[b, k]])?;
        steps.layer(&mut d, t, 2);
        let mask_r = d.mask(t, MASK_R, &[b, k]);
        deal_product(&mut d, &GRADIENT, &mask_b, &mask_r)?;
        deal_truncate(&mut d, &[d1, k], fp.frac_bits + bits)?;
        busy += start.elapsed();
    }
    steps.finish(&mut d)?;
    Ok(Report { stats: finish(&*d.net, busy, 0), ..Report::default() })
}

/// The model owner: the epochs' losses as they come, then the weights.
/// Its outputs: W' ([d+1, k]) and the losses ([epochs]).
pub fn model_owner(ctx: &Session, spec: &TrainSpec, on_epoch: &(dyn Fn(usize, f64) + Sync)) -> Result<Report> {
    let fp = spec.fp();
    let mut net = ctx.endpoint(Party::ModelOwner);
    let start = Instant::now();
    let mut losses = Vec::with_capacity(spec.epochs);
    for epoch in 0..spec.epochs {
        attribute(&mut net, epoch as u32 + 1, None);
        let sum = reconstruct(&mut net, Outside::Loss.step(), &[1])?[[0]];
        let loss = sum.0 as i64 as f64 / fp.scale() / (spec.rows() * spec.outputs) as f64;
        on_epoch(epoch, loss);
        losses.push(loss as f32);
    }
    attribute(&mut net, 0, None);
    let (d1, k) = (spec.features + 1, spec.outputs);
    let w = reconstruct(&mut net, Outside::Trained.step(), &[d1, k])?;
    let outputs =
        vec![Tensor::Float(fp.decode(&w)), Tensor::Float(ArrayD::from_shape_vec(IxDyn(&[losses.len()]), losses)?)];
    Ok(Report { stats: finish(&net, start.elapsed(), 0), outputs, ..Report::default() })
}

/// Train under Pond with every party a thread of this process.
pub fn train(
    spec: &TrainSpec,
    owners: &[OwnerData],
    config: &SecureConfig,
    on_epoch: &(dyn Fn(usize, f64) + Sync),
    on_step: Option<&(dyn Fn() + Sync)>,
) -> Result<TrainOutcome> {
    train_over(Arc::new(InProcess::new()), spec, owners, config, on_epoch, on_step)
}

/// [`train`] over a given transport (in tests, one that records every view).
pub fn train_over(
    transport: Arc<dyn Transport>,
    spec: &TrainSpec,
    owners: &[OwnerData],
    config: &SecureConfig,
    on_epoch: &(dyn Fn(usize, f64) + Sync),
    on_step: Option<&(dyn Fn() + Sync)>,
) -> Result<TrainOutcome> {
    spec.check()?;
    if !spec.held.is_empty() {
        anyhow::bail!("held data sets live on remote servers: train on them with --config");
    }
    if owners.iter().map(|o| o.features.nrows()).ne(spec.owners.iter().copied()) {
        anyhow::bail!("the data owners' row counts differ from the training spec");
    }
    for data in owners {
        check_owner(spec.fp(), data)?;
    }
    let session = u64::from_le_bytes(os_seed()?[..8].try_into()?);
    let ctx = Session { transport, id: session, timeout: config.timeout };
    let results = std::thread::scope(|scope| {
        let (ctx, t) = (&ctx, &ctx.transport);
        let mut handles = vec![
            spawn_party(scope, t, Party::Server0, move || server(ctx, spec, 0, on_step, &[])),
            spawn_party(scope, t, Party::Server1, move || server(ctx, spec, 1, None, &[])),
            spawn_party(scope, t, Party::Dealer, move || dealer(ctx, spec)),
            spawn_party(scope, t, Party::ModelOwner, move || model_owner(ctx, spec, on_epoch)),
        ];
        for (j, data) in owners.iter().enumerate() {
            handles.push(spawn_party(scope, t, Party::Client, move || data_owner(ctx, spec.fp(), j, data)));
        }
        handles.into_iter().map(|h| h.join().expect("a party thread panicked")).collect::<Vec<_>>()
    });
    assemble(spec, results)
}

/// The outcome from every party's report, or the failure that caused the others.
pub(crate) fn assemble(spec: &TrainSpec, results: Vec<(Party, Result<Report>)>) -> Result<TrainOutcome> {
    let mut stats = Stats::default();
    let mut owners = Vec::new();
    let mut outputs = Vec::new();
    for (party, report) in reports(results)? {
        match party {
            Party::Client => {
                owners.push(report.stats);
                continue;
            }
            Party::Dealer => stats.offline = report.stats.busy,
            Party::Server0 => {
                stats.setup = report.setup;
                stats.online = report.stats.busy;
                stats.layer_time = report.layer_time;
            }
            Party::ModelOwner => {
                stats.latency = report.stats.busy;
                outputs = report.outputs;
            }
            Party::Server1 => {}
        }
        stats.parties.insert(party, report.stats);
    }
    let [Tensor::Float(w), Tensor::Float(losses)] = outputs.as_slice() else {
        anyhow::bail!("the model owner received no weights");
    };
    let w = w.view().into_dimensionality::<ndarray::Ix2>()?.mapv(f64::from);
    if w.shape() != [spec.features + 1, spec.outputs] {
        anyhow::bail!("the model owner received weights of shape {:?}", w.shape());
    }
    let trained =
        Trained { model: Model::from_extended(&w), epoch_losses: losses.iter().map(|&l| f64::from(l)).collect() };
    Ok(TrainOutcome { trained, stats, owners })
}
