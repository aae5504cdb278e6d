//! `tfe-run train`: logistic regression on secret-shared rows of several data
//! owners; the trained model is written as a frozen GraphDef and `.npy` weights.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Mode;
use super::args::NetworkArgs;
use crate::error::{Error, exit};
use crate::npy::Input;
use crate::runtime::SecureConfig;
use crate::train::{self, DatasetInfo, OwnerData, TrainSpec, Trained, export, secure};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A data owner's features (.npy, [rows, features]); repeat once per owner.
    #[arg(long = "features", value_name = "X.npy", required_unless_present = "data")]
    pub features: Vec<PathBuf>,
    /// That owner's labels (.npy): 0/1 ([rows] or [rows, 1]), class ids ([rows]) or one-hot ([rows, classes]).
    #[arg(long = "labels", value_name = "y.npy")]
    pub labels: Vec<PathBuf>,
    /// A data set the servers hold (`tfe-run contribute`); repeat for several. Needs --config.
    /// Its rows come first, in the order given.
    #[arg(long = "data", value_name = "NAME")]
    pub data: Vec<String>,
    /// Passes over all rows.
    #[arg(long, value_name = "E", default_value_t = 10)]
    pub epochs: usize,
    /// Rows per SGD step (the last step of an epoch may have fewer).
    #[arg(long, value_name = "B", default_value_t = 32)]
    pub batch_size: usize,
    /// Step size of SGD (the gradient is the mean over a batch's rows).
    #[arg(long, value_name = "LR", default_value_t = 0.1)]
    pub learning_rate: f64,
    /// Shuffle the rows every epoch (a public random order; default: file order).
    #[arg(long)]
    pub shuffle: bool,
    /// The comparison protocol of the sigmoid's comparisons: bitwise or fss
    /// (see `tfe-run --help`).
    #[arg(long, value_name = "PROTOCOL", default_value_t = crate::protocol::Comparison::Bitwise)]
    pub comparison: crate::protocol::Comparison,
    #[command(flatten)]
    pub encoding: EncodingArgs,
    /// Where to write the trained model (frozen GraphDef); the weights go beside it
    /// as NAME.weights.npy ([features, outputs]) and NAME.bias.npy ([outputs]).
    #[arg(short, long, value_name = "MODEL.pb")]
    pub out: PathBuf,
    /// The model owner's held-out rows: report the trained model's accuracy on them.
    #[arg(long, value_name = "X.npy", requires = "test_labels")]
    pub test_features: Option<PathBuf>,
    /// Their labels, encoded as for --labels.
    #[arg(long, value_name = "y.npy", requires = "test_features")]
    pub test_labels: Option<PathBuf>,
    /// Train in the clear, with no protocol: the reference for secure training.
    #[arg(long)]
    pub plaintext: bool,
    /// Print per-party traffic, rounds and time, per phase of a step, to stderr.
    #[arg(long)]
    pub stats: bool,
    /// Train with the servers and crypto producer of a cluster (see `serve`).
    #[command(flatten)]
    pub net: NetworkArgs,
    /// Refuse a run whose estimated peak memory exceeds this (e.g. 512M, 8G).
    #[arg(long, value_name = "SIZE", default_value = "8G", value_parser = super::args::parse_size)]
    pub max_memory: u64,
}

/// How rows are encoded: what `train` and `contribute` (and so every data set
/// of one training run) must agree on.
#[derive(Debug, Args)]
pub struct EncodingArgs {
    /// Number of classes (default: from the labels; 0/1 labels train one output).
    /// Give it with class ids whose rows may not show every class.
    #[arg(long, value_name = "K")]
    pub classes: Option<usize>,
    /// Every feature must lie in [-R, R] (scale them first); it sizes the fixed point.
    #[arg(long, value_name = "R", default_value_t = 32.0)]
    pub feature_bound: f64,
    /// Fractional bits of the fixed-point encoding.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub frac_bits: u32,
}

#[derive(Debug, Args)]
pub struct ContributeArgs {
    #[command(flatten)]
    pub net: NetworkArgs,
    /// The name the model owner trains on with `tfe-run train --data NAME`.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Your features (.npy, [rows, features]).
    #[arg(long, value_name = "X.npy")]
    pub features: PathBuf,
    /// Your labels (.npy), as for `train`.
    #[arg(long, value_name = "y.npy")]
    pub labels: PathBuf,
    #[command(flatten)]
    pub encoding: EncodingArgs,
    /// A model-owner principal that may train on these rows; repeat for several.
    /// The servers refuse `train --data NAME` by any other.
    #[arg(long = "trainer", value_name = "PRINCIPAL", default_value = "model-owner")]
    pub trainers: Vec<String>,
    /// Replace the data set held under --name (only the principal that
    /// contributed it may; without this flag a held name is refused).
    #[arg(long)]
    pub replace: bool,
}

/// `tfe-run contribute`: a data owner shares its rows with the servers, which
/// keep them for training sessions.
pub fn contribute(args: &ContributeArgs) -> Result<u8> {
    let remote = args.net.required("contribute")?;
    train::check_feature_bound(args.encoding.feature_bound)?;
    crate::ring::FixedPoint::new(args.encoding.frac_bits)?;
    let (x, y) = (Input::File(args.features.clone()), Input::File(args.labels.clone()));
    let files = vec![train::read_owner(&x, &y, args.encoding.feature_bound)?];
    let (mut owners, outputs) = train::encode_labels(files, args.encoding.classes)?;
    let data = owners.pop().expect("one owner");
    let info = DatasetInfo {
        rows: data.features.nrows(),
        features: data.features.ncols(),
        outputs,
        frac_bits: args.encoding.frac_bits,
        feature_bound: args.encoding.feature_bound,
    };
    info.check()?;
    let keep = crate::remote::driver::Keep { trainers: args.trainers.clone(), replace: args.replace };
    crate::remote::driver::contribute(&remote, &args.name, &data, info, &keep)?;
    super::ui::info(format_args!(
        "shared {} rows of `{}` with server0 and server1 as data set `{}` ({} features, {} output(s)); \
         train on it with `tfe-run train --data {}`",
        info.rows,
        args.features.display(),
        args.name,
        info.features,
        info.outputs,
        args.name
    ));
    Ok(exit::OK)
}

/// Everything the command reads, checked, before any party starts.
pub struct Loaded {
    pub spec: TrainSpec,
    pub owners: Vec<OwnerData>,
    pub test: Option<(PathBuf, ndarray::Array2<f32>, ndarray::Array2<f32>)>,
}

/// The local data owners' rows (`--features`, `--labels`) and the model
/// owner's held-out rows (`--test-features`, `--test-labels`): files, or
/// arrays handed over by the Python package.
pub struct TrainData {
    pub features: Vec<Input>,
    pub labels: Vec<Input>,
    pub test: Option<(Input, Input)>,
}

impl TrainData {
    /// The files `args` names.
    pub fn files(args: &TrainArgs) -> TrainData {
        let files = |paths: &[PathBuf]| paths.iter().cloned().map(Input::File).collect();
        let test = args.test_features.clone().map(Input::File).zip(args.test_labels.clone().map(Input::File));
        TrainData { features: files(&args.features), labels: files(&args.labels), test }
    }
}

/// Read and check the local owners' rows; `held` describes the data sets the
/// servers hold, which every local file must agree with.
pub fn load(args: &TrainArgs, data: &TrainData, held: &[(String, DatasetInfo)]) -> Result<Loaded> {
    if data.features.len() != data.labels.len() {
        return Err(Error::bad_input(format!(
            "{} --features but {} --labels: give one --labels after each --features",
            data.features.len(),
            data.labels.len()
        )));
    }
    train::check_feature_bound(args.encoding.feature_bound)?;
    // The held data sets fix the features, the classes and the fixed point.
    let mut classes = args.encoding.classes;
    let mut feature_bound = args.encoding.feature_bound;
    if let Some((first_name, first)) = held.first() {
        for (name, info) in held {
            let differs = |what: &str, a: String, b: String| {
                Err(Error::bad_input(format!("data set `{name}` has {a} {what} but `{first_name}` has {b}")))
            };
            if info.features != first.features {
                return differs("features", info.features.to_string(), first.features.to_string());
            }
            if info.outputs != first.outputs {
                return differs("outputs", info.outputs.to_string(), first.outputs.to_string());
            }
            if info.frac_bits != args.encoding.frac_bits {
                return Err(Error::bad_input(format!(
                    "data set `{name}` was shared with {} fractional bits: train with --frac-bits {}",
                    info.frac_bits, info.frac_bits
                )));
            }
            feature_bound = feature_bound.max(info.feature_bound);
        }
        match classes {
            Some(k) if k != first.outputs => {
                return Err(Error::bad_input(format!(
                    "--classes {k}, but data set `{first_name}` has {} output(s)",
                    first.outputs
                )));
            }
            _ => classes = Some(first.outputs),
        }
    }
    let mut files = Vec::with_capacity(args.features.len() + 1);
    for (x, y) in data.features.iter().zip(&data.labels) {
        files.push(train::read_owner(x, y, feature_bound)?);
    }
    if let Some((x, y)) = &data.test {
        files.push(train::read_owner(x, y, f64::INFINITY)?);
    }
    let (mut owners, outputs) = train::encode_labels(files, classes)?;
    let test = data.test.as_ref().map(|(x, _)| {
        let t = owners.pop().expect("pushed above");
        (PathBuf::from(x.name()), t.features, t.labels)
    });
    let features = held.first().map(|(_, i)| i.features).or(owners.first().map(|o| o.features.ncols()));
    let features = features.or(test.as_ref().map(|t| t.1.ncols())).unwrap_or(0);
    for (j, o) in owners.iter().enumerate() {
        if o.features.ncols() != features {
            return Err(Error::bad_input(format!(
                "features `{}` has {} columns but the held data sets have {features}",
                data.features[j].name(),
                o.features.ncols()
            )));
        }
    }
    if let Some((path, x, _)) = &test
        && x.ncols() != features
    {
        return Err(Error::bad_input(format!(
            "--test-features `{}` has {} columns, the training rows {features}",
            path.display(),
            x.ncols()
        )));
    }
    let shuffle = if args.shuffle { Some(crate::ring::os_seed()?) } else { None };
    let spec = TrainSpec {
        owners: held.iter().map(|(_, i)| i.rows).chain(owners.iter().map(|o| o.features.nrows())).collect(),
        features,
        outputs,
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.learning_rate,
        feature_bound,
        shuffle,
        frac_bits: args.encoding.frac_bits,
        held: held.iter().map(|(n, _)| n.clone()).collect(),
        comparison: args.comparison,
    };
    spec.check()?;
    Ok(Loaded { spec, owners, test })
}

pub fn run(args: &TrainArgs) -> Result<u8> {
    let run = train_data(args, &TrainData::files(args))?;
    if let (true, Some((stats, owners))) = (args.stats, &run.stats) {
        eprint!("{}", super::stats::train_report(&run.spec, stats, owners)?);
    }
    export::write(&run.trained.model, &args.out).map_err(Error::output)?;
    let text = summary(&run.spec, run.mode, &run.trained, run.test.as_ref(), &args.out)?;
    super::write_stdout(&text)?;
    Ok(exit::OK)
}

/// A finished training run: what was trained, how, and what was measured.
pub struct TrainRun {
    pub spec: TrainSpec,
    pub mode: Mode,
    pub trained: Trained,
    /// The parties' measurements and the data owners' (not for `--plaintext`).
    pub stats: Option<(crate::runtime::Stats, Vec<crate::runtime::PartyStats>)>,
    /// The held-out rows, named, for the accuracy.
    pub test: Option<(PathBuf, ndarray::Array2<f32>, ndarray::Array2<f32>)>,
}

/// `train` with the options of `args` on the rows of `data` (files or arrays),
/// without writing or printing anything.
pub fn train_data(args: &TrainArgs, data: &TrainData) -> Result<TrainRun> {
    let remote = args.net.remote()?;
    if remote.is_some() && args.plaintext {
        return Err(Error::bad_input("--plaintext trains locally; it cannot be combined with --config"));
    }
    if !args.data.is_empty() && remote.is_none() {
        return Err(Error::bad_input("--data names data sets held by the servers of a cluster: it needs --config"));
    }
    let mut held = Vec::with_capacity(args.data.len());
    if let Some(remote) = &remote {
        // Every certificate the run needs, before any party is contacted: the
        // model owner's, and the client's for local data owners' rows.
        remote.security.identity(crate::transport::Party::ModelOwner)?;
        if !data.features.is_empty() {
            remote.security.identity(crate::transport::Party::Client)?;
        }
        for name in &args.data {
            held.push((name.clone(), crate::remote::driver::describe_data(remote, name)?));
        }
    }
    let mode = match (args.plaintext, &remote) {
        (true, _) => Mode::Plaintext,
        (false, Some(_)) => Mode::Remote,
        (false, None) => Mode::Secure,
    };
    let Loaded { spec, owners, test } = load(args, data, &held)?;
    if mode == Mode::Secure {
        crate::runtime::check_memory(spec.estimate_memory(), args.max_memory, "secure training")?;
    }
    let bar = progress_bar(&spec);
    let on_epoch = |epoch: usize, loss: f64| {
        bar.set_position(((epoch + 1) * spec.steps_per_epoch()) as u64);
        bar.set_message(format!("epoch {}/{}  loss {loss:.4}", epoch + 1, spec.epochs));
    };
    let on_step = || bar.inc(1);
    let (trained, stats) = match (mode, &remote) {
        (Mode::Plaintext, _) => (train::train_plaintext(&spec, &owners, on_epoch)?, None),
        (Mode::Remote, Some(remote)) => {
            let outcome = crate::remote::driver::train(remote, &spec, &owners, &on_epoch)?;
            (outcome.trained, Some((outcome.stats, outcome.owners)))
        }
        _ => {
            // In one process no party can vanish silently (a failing one stops the
            // others at once); the model owner's wait for a loss spans a whole epoch.
            let timeout = std::time::Duration::from_secs(86_400);
            let config = SecureConfig { fp: spec.fp(), timeout, ..SecureConfig::default() };
            let outcome = secure::train(&spec, &owners, &config, &on_epoch, Some(&on_step))?;
            (outcome.trained, Some((outcome.stats, outcome.owners)))
        }
    };
    bar.finish_and_clear();
    Ok(TrainRun { spec, mode, trained, stats, test })
}

fn progress_bar(spec: &TrainSpec) -> ProgressBar {
    if !std::io::stderr().is_terminal() || super::ui::quiet() {
        return ProgressBar::hidden();
    }
    let steps = (spec.steps_per_epoch() * spec.epochs) as u64;
    let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} training [{bar:30}] {pos}/{len} steps  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("epoch 1/{}", spec.epochs));
    bar
}

/// What the command prints: the run, each epoch's loss, the files, the accuracy.
fn summary(
    spec: &TrainSpec,
    mode: Mode,
    trained: &Trained,
    test: Option<&(PathBuf, ndarray::Array2<f32>, ndarray::Array2<f32>)>,
    out: &std::path::Path,
) -> Result<String> {
    let mut s = String::new();
    writeln!(
        s,
        "trained {}: {} rows from {} data owner(s), {} features, {} output(s); {} epochs, batch {}, learning rate {}{}",
        super::output::mode_name(mode),
        spec.rows(),
        spec.owners.len(),
        spec.features,
        spec.outputs,
        spec.epochs,
        spec.batch_size,
        spec.learning_rate,
        if spec.shuffle.is_some() { ", shuffled" } else { "" }
    )?;
    for (e, loss) in trained.epoch_losses.iter().enumerate() {
        writeln!(s, "epoch {:>3}: loss {loss:.4}", e + 1)?;
    }
    if let Some((path, x, y)) = test {
        let acc = trained.model.accuracy(x, y);
        writeln!(s, "accuracy on `{}`: {:.2}% ({} rows)", path.display(), 100.0 * acc, x.nrows())?;
    }
    let (w, b) = export::npy_paths(out);
    writeln!(
        s,
        "wrote {} (input `{}`, output `{}`), {}, {}",
        out.display(),
        export::INPUT,
        export::OUTPUT,
        w.display(),
        b.display()
    )?;
    Ok(s)
}
