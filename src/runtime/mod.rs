//! The secure run: five parties as threads of one process, each with only its own
//! state, talking only through the transport.
//!
//! A session starts with the dealer sending each server its seed and the model
//! owner secret-sharing the weights; the servers open the masked weights once
//! (set-up). Each prediction then has an offline phase (the dealer deals all the
//! material the plan needs) and an online phase (the client shares its input, the
//! servers run the plan on shares, the client opens the output). The dealer's
//! work does not depend on any input, so it could run entirely before; here it
//! runs beside the online phase, and server 1 waits only for material the dealer
//! has not dealt yet. Running them one after the other left one of two cores
//! idle for the whole offline phase.

pub mod flow;
pub mod message;
pub(crate) mod party;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::ArrayD;

pub use crate::lower::{ClientFinal, Program, lower, lower_with};
pub use crate::ops::Kind;
pub use crate::protocol::Cost;

use crate::plan::Plan;
use crate::ring::FixedPoint;
use crate::tensor::Tensor;
use crate::transport::{Aborted, InProcess, Party, Traffic, Transport};

/// Settings of a secure run.
#[derive(Debug, Clone)]
pub struct SecureConfig {
    pub fp: FixedPoint,
    /// How long any party waits for any one message.
    pub timeout: Duration,
    /// Show a progress bar per layer on stderr (only drawn when it is a terminal).
    pub progress: bool,
    /// The comparison protocol of the program [`predict_many_over`] lowers.
    pub comparison: crate::protocol::Comparison,
}

impl Default for SecureConfig {
    fn default() -> Self {
        SecureConfig {
            fp: FixedPoint::default(),
            // In one process no party can vanish silently (a failing party aborts
            // the others at once), so the deadline only guards against a protocol
            // bug; the client's one receive spans a whole prediction.
            timeout: Duration::from_secs(600),
            progress: false,
            comparison: Default::default(),
        }
    }
}

/// What one party did in a session.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PartyStats {
    pub traffic: Traffic,
    /// Traffic per plan step.
    pub per_layer: BTreeMap<usize, Traffic>,
    /// Time spent in the offline phase (the dealer) or online phase (the others).
    pub busy: Duration,
    /// Ring elements expanded from seeds instead of received.
    pub expanded_words: u64,
}

/// Everything measured in a session.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub parties: BTreeMap<Party, PartyStats>,
    /// Per step (up to the revealed value): server 0's measured time.
    pub layer_time: BTreeMap<usize, Duration>,
    pub setup: Duration,
    /// The dealer's work for all predictions.
    pub offline: Duration,
    /// The servers' online phase: from receiving the input shares to sending the
    /// output shares (server 0's clock), including any wait for the dealer, who
    /// deals concurrently.
    pub online: Duration,
    /// The client's wait: from sharing its input to decoding the output, offline
    /// phase included.
    pub latency: Duration,
    pub predictions: usize,
}

impl Stats {
    /// Bytes the dealer would have sent without the seed trick, and did send.
    pub fn dealer_bytes(&self) -> (u64, u64) {
        let sent = self.parties.get(&Party::Dealer).map_or(0, |p| p.traffic.bytes_sent);
        // The servers' reports come from the network: saturate, never wrap.
        let expanded = [Party::Server0, Party::Server1]
            .iter()
            .filter_map(|p| self.parties.get(p))
            .fold(0u64, |sum, p| sum.saturating_add(p.expanded_words.saturating_mul(8)));
        (sent.saturating_add(expanded), sent)
    }
}

/// The outcome of a secure session: one output per prediction, and the statistics.
pub struct Outcome {
    pub outputs: Vec<Tensor>,
    pub stats: Stats,
}

/// Refuse a run whose estimated peak memory is over the limit, before allocating it.
pub fn check_memory(estimate: u64, limit: u64, what: &str) -> Result<()> {
    if estimate > limit {
        return Err(crate::error::Error::bad_input(format!(
            "{what} needs an estimated {} of memory, over the --max-memory limit of {}; \
             use a smaller batch or raise --max-memory",
            human_size(estimate),
            human_size(limit)
        )));
    }
    Ok(())
}

/// A size as people read it: `10 bytes`, `3.5 KB`, `100 MB` (powers of 1024, as
/// `--max-memory` takes them), so a small limit is not shown as "0 MB".
pub fn human_size(bytes: u64) -> String {
    const MB: u64 = 1 << 20;
    match bytes {
        1 => "1 byte".to_string(),
        0..1024 => format!("{bytes} bytes"),
        1024..MB => format!("{:.1} KB", bytes as f64 / 1024.0),
        _ => format!("{:.0} MB", bytes as f64 / MB as f64),
    }
}

/// The most predictions of one session: prediction j is number j (a u32) of its
/// messages and streams, and 0 is the set-up.
pub const MAX_PREDICTIONS: usize = u32::MAX as usize;

/// `n` predictions as the number the last one gets, refused past
/// [`MAX_PREDICTIONS`] (a wrapped number would reuse the masks of another).
pub fn prediction_count(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| {
        crate::error::Error::bad_input(format!(
            "{n} predictions in one session: at most {MAX_PREDICTIONS}; split the input"
        ))
    })
}

/// Run one prediction under Pond.
pub fn predict(plan: &Plan, inputs: &BTreeMap<String, ArrayD<f32>>, config: &SecureConfig) -> Result<Outcome> {
    predict_many(plan, std::slice::from_ref(inputs), config)
}

/// Run a session: set-up once, then one prediction per entry of `batches` (each
/// with the shapes the plan was built for). The weights are shared and their masks
/// opened once for all of them.
pub fn predict_many(plan: &Plan, batches: &[BTreeMap<String, ArrayD<f32>>], config: &SecureConfig) -> Result<Outcome> {
    predict_many_over(Arc::new(InProcess::new()), plan, batches, config)
}

/// [`predict_many`] over a given transport: the same protocol code over any medium
/// (and, in tests, over one that records every party's view).
pub fn predict_many_over(
    transport: Arc<dyn Transport>,
    plan: &Plan,
    batches: &[BTreeMap<String, ArrayD<f32>>],
    config: &SecureConfig,
) -> Result<Outcome> {
    let program = Arc::new(lower_with(plan, config.fp, config.comparison)?);
    run_program(transport, &program, &plan.weight_values, batches, config)
}

/// Run a session of a lowered program (lowered once by the caller, which also
/// sized it): the model owner shares `weights`, the client one batch per
/// prediction.
pub fn run_program(
    transport: Arc<dyn Transport>,
    program: &Arc<Program>,
    weights: &BTreeMap<crate::plan::ValueId, ArrayD<f32>>,
    batches: &[BTreeMap<String, ArrayD<f32>>],
    config: &SecureConfig,
) -> Result<Outcome> {
    prediction_count(batches.len())?;
    party::check_values(&program.plan, program.fp(), Some(weights), batches)?;
    let session = u64::from_le_bytes(crate::ring::os_seed()?[..8].try_into().expect("8 bytes"));
    let progress = progress_bar(config.progress, program.kinds.len() as u64 * batches.len() as u64);
    let ctx = party::Context {
        session: party::Session { transport: Arc::clone(&transport), id: session, timeout: config.timeout },
        program: Arc::clone(program),
    };

    let results = std::thread::scope(|scope| {
        let predictions = batches.len();
        let pb = progress.clone();
        let (c, t) = (&ctx, &ctx.session.transport);
        let handles = vec![
            spawn_party(scope, t, Party::Server0, move || {
                party::server(c, 0, predictions, Some(&pb), party::Weights::FromOwner)
            }),
            spawn_party(scope, t, Party::Server1, move || {
                party::server(c, 1, predictions, None, party::Weights::FromOwner)
            }),
            spawn_party(scope, t, Party::Dealer, move || party::dealer(c, predictions)),
            spawn_party(scope, t, Party::ModelOwner, move || party::model_owner(c, weights)),
            spawn_party(scope, t, Party::Client, move || party::client(c, batches)),
        ];
        handles.into_iter().map(|h| h.join().expect("a party thread panicked")).collect::<Vec<_>>()
    });
    progress.finish_and_clear();
    assemble(results, batches.len())
}

/// The outcome of a secure session from every party's report, or the failure that
/// caused the others (not its consequences).
pub(crate) fn assemble(results: Vec<(Party, Result<party::Report>)>, predictions: usize) -> Result<Outcome> {
    let mut stats = Stats { predictions, ..Stats::default() };
    let mut outputs = Vec::new();
    for (party, report) in reports(results)? {
        stats.layer_time.extend(report.layer_time);
        if party == Party::Dealer {
            stats.offline = report.stats.busy;
        }
        if party == Party::Client {
            stats.latency = report.stats.busy;
            outputs = report.outputs;
        }
        if party == Party::Server0 {
            stats.setup = report.setup;
            stats.online = report.stats.busy;
        }
        stats.parties.insert(party, report.stats);
    }
    Ok(Outcome { outputs, stats })
}

/// Every party's report, or the failure that caused the others: a party that
/// failed on its own, rather than one stopped because another failed.
pub(crate) fn reports(results: Vec<(Party, Result<party::Report>)>) -> Result<Vec<(Party, party::Report)>> {
    let mut first_stopped = None;
    let mut ok = Vec::with_capacity(results.len());
    for (party, result) in results {
        match result {
            Ok(report) => ok.push((party, report)),
            Err(e) if e.chain().any(|c| c.is::<Aborted>()) => {
                first_stopped.get_or_insert(e);
            }
            Err(e) => return Err(e.context(format!("{} failed", party.name()))),
        }
    }
    match first_stopped {
        Some(e) => Err(e),
        None => Ok(ok),
    }
}

/// Run one party's `work` in its own thread; if it fails, stop the others (all
/// that use `transport`) at once.
pub(crate) fn spawn_party<'scope, F>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    transport: &Arc<dyn Transport>,
    party: Party,
    work: F,
) -> std::thread::ScopedJoinHandle<'scope, (Party, Result<party::Report>)>
where
    F: FnOnce() -> Result<party::Report> + Send + 'scope,
{
    let transport = Arc::clone(transport);
    std::thread::Builder::new()
        .name(party.name().to_string())
        .spawn_scoped(scope, move || {
            let result = work();
            if let Err(e) = &result {
                transport.abort(abort_reason(party, e));
            }
            (party, result)
        })
        .expect("the operating system refused to start a thread")
}

/// What a failing party tells the others (an abort frame, and so their logs):
/// its name and the kind of failure. The client (and a data owner) and the model
/// owner hold private values, which their errors may quote ("value 3000000000 at
/// flat index 17"): that text stays with their own user, who sees all of it. The
/// servers and the crypto producer hold no plaintext; their errors name parties,
/// lengths and tags, and go as they are.
pub fn abort_reason(party: Party, e: &anyhow::Error) -> String {
    if matches!(party, Party::Server0 | Party::Server1 | Party::Dealer) {
        return format!("{} failed: {e:#}", party.name());
    }
    // Stopped by another party's failure, whose reason is public already.
    if let Some(Aborted(reason)) = e.chain().find_map(|c| c.downcast_ref::<Aborted>()) {
        return format!("{} stopped because {reason}", party.name());
    }
    let kind = match (e.chain().find_map(|c| c.downcast_ref::<crate::ring::OutOfRange>()), crate::error::category_of(e))
    {
        (Some(range), _) => range.public(),
        (None, Some(crate::error::Category::BadInput)) => "a bad input".to_string(),
        (None, Some(crate::error::Category::InvalidModel)) => "an invalid model".to_string(),
        (None, Some(crate::error::Category::Unsupported)) => "an unsupported model".to_string(),
        (None, None) => "an error".to_string(),
    };
    format!("{} failed: {kind} (the details are for its own user only)", party.name())
}

fn progress_bar(wanted: bool, steps: u64) -> ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} secure run [{bar:30}] {pos}/{len} layers  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}
