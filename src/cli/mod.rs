//! The command line: parse, validate, run, print.

mod advice;
mod args;
pub mod inspect;
mod output;
pub mod remote;
pub mod stats;
pub mod status;
pub mod train;
pub mod ui;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use ndarray::ArrayD;

pub use args::{Cli, Command, DeployArgs, Format, InspectArgs, InspectFormat, Mode, NetworkArgs, RunConfig, VERSION};

use crate::error::{Error, exit};
use crate::frontend::{self, Feed, Report, Source};
use crate::npy::Input;
use crate::plan::Plan;
use crate::runtime::{self, SecureConfig};
use crate::{npy, plaintext};

/// Run the command line and return the process exit code.
pub fn main() -> u8 {
    let (args, first) = args::hoist_global_flags(std::env::args_os().collect());
    if let Some(color) = args::color_in_args(&args) {
        ui::set_color(color);
    }
    if let Some(message) = mistyped_command(first) {
        ui::error(message);
        return exit::BAD_INPUT;
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit::BAD_INPUT } else { exit::OK };
        }
    };
    ui::set(cli.quiet, cli.color);
    if !matches!(cli.command, Some(Command::Serve(_))) {
        crate::keep_freed_memory();
    }
    // Errors of the remote commands that are not about the user's files are the
    // parties' (unreachable, refused, failed, timed out).
    let (result, remote) = match cli.command {
        Some(Command::Inspect(args)) => (inspect::run(&args), false),
        Some(Command::Ops) => (write_stdout(&crate::frontend::tf::ops_markdown()).map(|()| exit::OK), false),
        Some(Command::Completions { shell }) => (completions(shell), false),
        Some(Command::Man) => (man(), false),
        Some(Command::Serve(args)) => (remote::serve(&args), false),
        Some(Command::Certs(args)) => (remote::certs(&args), false),
        Some(Command::Deploy(args)) => (remote::deploy(&args), true),
        Some(Command::Predict(args)) => (remote::predict(&args), true),
        Some(Command::Status(args)) => (status::run(&args), true),
        Some(Command::Contribute(args)) => (train::contribute(&args), true),
        Some(Command::Train(args)) => {
            let remote = args.net.config.is_some();
            (train::run(&args), remote)
        }
        None => {
            let remote = cli.run.net.config.is_some();
            (cli.run.validate().and_then(|config| run(&config)), remote)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) if crate::error::is_closed_stdout(&err) => exit::OK,
        Err(err) => {
            ui::error(format_args!("{err:#}"));
            crate::error::exit_code_of(&err, remote)
        }
    }
}

/// A first argument that is no file and is close to a subcommand's name
/// (`inspct`) is a typo, not a model to read: say which command was meant.
fn mistyped_command(first: Option<std::ffi::OsString>) -> Option<String> {
    use clap::CommandFactory;
    let first = first?.into_string().ok()?;
    if first.starts_with('-') || Path::new(&first).exists() {
        return None;
    }
    let command = Cli::command();
    let names: Vec<String> = command.get_subcommands().map(|c| c.get_name().to_string()).collect();
    if names.contains(&first) {
        return None;
    }
    let best = names.iter().min_by_key(|n| strsim::levenshtein(n, &first))?;
    (strsim::levenshtein(best, &first) <= 2)
        .then(|| format!("unrecognized command `{first}`: did you mean `tfe-run {best}`? (see `tfe-run --help`)"))
}

/// `tfe-run completions SHELL`: the completion script clap_complete generates
/// from the parser, so it knows every subcommand and flag of this build.
fn completions(shell: clap_complete::Shell) -> Result<u8> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "tfe-run", &mut script);
    write_stdout(&String::from_utf8_lossy(&script))?;
    Ok(exit::OK)
}

/// `tfe-run man`: the man page clap_mangen renders from the parser.
fn man() -> Result<u8> {
    use clap::CommandFactory;
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    write_stdout(&String::from_utf8_lossy(&page))?;
    Ok(exit::OK)
}

/// Write `text` to stdout, marking its failure as [`Error::Stdout`]: a reader
/// that stopped reading (`tfe-run ... | head`) is not an error, but only a
/// write to stdout counts (a peer that closed its connection, a server that
/// refused our certificate, is a broken pipe too, and a failure).
fn write_stdout(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).map_err(Error::Stdout)?;
    Ok(())
}

/// Which file feeds which placeholder: the `--input NAME=FILE` feeds, and the
/// positional INPUT for the one placeholder left.
fn assign_inputs(
    report: &Report,
    input: Option<&Input>,
    named: &BTreeMap<String, Input>,
    public: &frontend::Public,
) -> Result<BTreeMap<String, Input>> {
    report.check_feed_names(named.keys().chain(public.keys()))?;
    let mut feeds = named.clone();
    if let Some(input) = input {
        let placeholders = &report.placeholders;
        // A placeholder with a default (TF1's keep_prob) need not be fed.
        let open: Vec<&str> = (placeholders.iter().filter(|p| !p.has_default))
            .map(|p| p.name.as_str())
            .filter(|n| !feeds.contains_key(*n) && !public.contains_key(*n))
            .collect();
        if placeholders.is_empty() {
            return Err(Error::bad_input(format!(
                "output `{}` does not depend on any input: there is nothing to compute privately",
                report.output
            )));
        }
        match open.as_slice() {
            [one] => {
                feeds.insert(one.to_string(), input.clone());
            }
            [] => {
                return Err(Error::bad_input(format!(
                    "INPUT `{}` is given, but every placeholder is already fed with --input",
                    input.name()
                )));
            }
            many => {
                return Err(Error::bad_input(format!(
                    "the model has {} placeholders without an input ({}); feed all but one with --input NAME=FILE.npy",
                    many.len(),
                    many.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }
    Ok(feeds)
}

/// A plan and the arrays to feed it.
pub struct Prepared {
    pub plan: Plan,
    pub inputs: BTreeMap<String, ArrayD<f32>>,
}

/// Load `model`, read the inputs and build the plan for their shapes.
///
/// Unsupported ops are reported before any input is read: a model that cannot run
/// is the first thing a user needs to know.
pub fn prepare(
    model: &Path,
    output_node: Option<&str>,
    input: Option<&Path>,
    named: &BTreeMap<String, PathBuf>,
) -> Result<Prepared> {
    prepare_public(model, output_node, input, named, &frontend::Public::new())
}

/// [`prepare`], with public numbers fed to some placeholders (`--public`).
pub fn prepare_public(
    model: &Path,
    output_node: Option<&str>,
    input: Option<&Path>,
    named: &BTreeMap<String, PathBuf>,
    public: &frontend::Public,
) -> Result<Prepared> {
    let choice = frontend::Choice { output_node, ..frontend::Choice::default() };
    prepare_choice(model, choice, input, named, public)
}

/// [`prepare_public`] of the output `choice` names (a SavedModel's signature and key).
pub fn prepare_choice(
    model: &Path,
    choice: frontend::Choice<'_>,
    input: Option<&Path>,
    named: &BTreeMap<String, PathBuf>,
    public: &frontend::Public,
) -> Result<Prepared> {
    let files =
        |named: &BTreeMap<String, PathBuf>| named.iter().map(|(n, p)| (n.clone(), Input::File(p.clone()))).collect();
    let input = input.map(|p| Input::File(p.to_path_buf()));
    prepare_batched(&Source::Path(model.to_path_buf()), choice, input.as_ref(), &files(named), public, false)
        .map(|(prepared, _)| prepared)
}

/// [`prepare_choice`]; with `split`, a placeholder of a fixed batch `b` fed a
/// file of another number of rows is planned for `b` rows, and the number of
/// rows is returned: the caller runs the file in batches, as `predict` does.
fn prepare_batched(
    model: &Source,
    choice: frontend::Choice<'_>,
    input: Option<&Input>,
    named: &BTreeMap<String, Input>,
    public: &frontend::Public,
    split: bool,
) -> Result<(Prepared, Option<usize>)> {
    let mut inputs = BTreeMap::new();
    let mut rows = None;
    let loaded = frontend::load_source(model, choice, public, |report| {
        let files = assign_inputs(report, input, named, public)?;
        let mut feeds = BTreeMap::new();
        for (name, file) in &files {
            let (array, dtype) = file.read_typed()?;
            let path = Path::new(&file.name()).to_path_buf();
            let path = path.as_path();
            check_integer_feed(report, name, path, &array)?;
            advice::warn_unscaled(report.placeholders.iter().find(|p| p.name == *name), path, dtype, &array);
            let mut shape = array.shape().to_vec();
            if let Some(batch) =
                report.placeholders.iter().find(|p| p.name == *name).and_then(|p| fixed_batch(p, &shape))
                && split
            {
                rows = Some(shape[0]);
                shape[0] = batch;
            }
            feeds.insert(name.clone(), Feed { shape, source: file.name() });
            inputs.insert(name.clone(), array);
        }
        advice::check_shapes(report, &feeds)?;
        Ok(feeds)
    })?;
    let plan = loaded.into_plan()?;
    Ok((Prepared { plan, inputs }, rows))
}

/// The fixed batch of placeholder `p` when a file of `shape` holds another
/// number of rows and otherwise fits it: the file runs in batches
/// ([`crate::batches::split`] decides whether it can).
fn fixed_batch(p: &frontend::Placeholder, shape: &[usize]) -> Option<usize> {
    let dims = p.shape.as_ref()?;
    let batch = (*dims.first()?)?;
    let rest_fits = dims.len() == shape.len() && dims.iter().zip(shape).skip(1).all(|(d, &n)| d.is_none_or(|d| d == n));
    let rows = *shape.first()?;
    (rest_fits && batch > 0 && rows > 0 && rows != batch).then_some(batch)
}

/// An integer placeholder (token ids) takes integers only, as TensorFlow does: a
/// fraction would be rounded by the lookup instead of refused. The value is not
/// shown (it is the client's private input).
fn check_integer_feed(report: &frontend::Report, name: &str, path: &Path, array: &ndarray::ArrayD<f32>) -> Result<()> {
    let Some(p) = report.placeholders.iter().find(|p| p.name == name) else { return Ok(()) };
    if !p.dtype.is_some_and(|d| d.starts_with("int") || d.starts_with("uint")) {
        return Ok(());
    }
    match array.iter().position(|v| v.fract() != 0.0) {
        Some(i) => Err(crate::error::Error::bad_input(format!(
            "`{}` feeds placeholder `{name}` of dtype {}, but holds a value that is not an integer at flat index {i}",
            path.display(),
            p.dtype_name()
        ))),
        None => Ok(()),
    }
}

/// A prediction: load, plan, execute, print.
pub fn run(config: &RunConfig) -> Result<u8> {
    let prediction = predict(config)?;
    if let (true, Some((program, stats))) = (config.stats, &prediction.secure) {
        eprint!("{}", stats::report(program, stats)?);
    }
    print_result(
        config.model.path(),
        &prediction.plan,
        config.mode,
        config.format,
        config.out.as_deref(),
        &prediction.output,
    )
}

/// What a prediction computed: the plan it ran, the output tensor, and for a
/// secure run (in this process or remote) the lowered program and what was measured.
pub struct Prediction {
    pub plan: Plan,
    pub output: crate::tensor::Tensor,
    pub secure: Option<(std::sync::Arc<crate::lower::Program>, runtime::Stats)>,
}

/// A prediction: load, plan, execute, as `tfe-run MODEL INPUT` does (and the
/// Python package's `predict`), without printing anything.
pub fn predict(config: &RunConfig) -> Result<Prediction> {
    let (Prepared { plan, inputs }, rows) =
        prepare_batched(&config.model, config.choice(), config.input.as_ref(), &config.feeds, &config.public, true)?;
    // A fixed-batch model fed several of its batches runs them one after the
    // other (in one session under Pond), as `predict` runs a deployed model.
    let (batches, rows) = match rows {
        Some(_) => {
            let batches = crate::batches::split(&plan, &inputs, crate::batches::WholeBatches::Allowed)?;
            (batches.feeds, Some(batches.rows))
        }
        None => (vec![inputs], None),
    };
    // Lowered once: what is sized here is what runs.
    let program = match config.mode {
        Mode::Plaintext => None,
        Mode::Secure | Mode::Remote => {
            Some(std::sync::Arc::new(runtime::lower_with(&plan, config.fixed_point, config.comparison)?))
        }
    };
    let (estimate, what) = match &program {
        None => (plaintext::estimate_memory(&plan), "the plaintext run"),
        Some(program) => (program.estimate_memory(), "the secure run"),
    };
    runtime::check_memory(estimate, config.max_memory, &format!("{what} of `{}`", config.model.path().display()))?;
    let mut measured = None;
    let outputs = match (config.mode, &program) {
        (Mode::Secure, Some(program)) => {
            let secure = SecureConfig { fp: config.fixed_point, progress: !ui::quiet(), ..SecureConfig::default() };
            let transport = std::sync::Arc::new(crate::transport::InProcess::new());
            let outcome = runtime::run_program(transport, program, &plan.weight_values, &batches, &secure)?;
            measured = Some((program.clone(), outcome.stats));
            outcome.outputs
        }
        (Mode::Remote, Some(program)) => {
            let remote = config.remote.as_ref().expect("remote mode has a cluster");
            let outcome = crate::remote::driver::predict_program(remote, program, &plan.weight_values, &batches)?;
            measured = Some((program.clone(), outcome.stats));
            outcome.outputs
        }
        _ => {
            let mut outputs = Vec::with_capacity(batches.len());
            for inputs in &batches {
                let (output, beyond) = plaintext::run_within(&plan, inputs, config.fixed_point.bound())?;
                warn_outside_the_range(beyond, config.fixed_point);
                outputs.push(output);
            }
            outputs
        }
    };
    let output = match rows {
        Some(rows) => crate::batches::join(&plan, outputs, rows)?,
        None => outputs.into_iter().next().context("no output")?,
    };
    Ok(Prediction { plan, output, secure: measured })
}

/// A plaintext run whose values left the representable range is one that a
/// secure run of the same input would compute wrongly (its truncations and
/// comparisons assume the range, and private values cannot be checked): say
/// so, naming the node, on the user's own stderr.
fn warn_outside_the_range(beyond: Option<plaintext::Beyond>, fp: crate::ring::FixedPoint) {
    if let Some(beyond) = beyond {
        ui::warning(format!(
            "`{}` is the first node to leave the secure range (|x| = {:e}; |x| < {:e} with {} fractional bits): a secure run of this input would be wrong from there on; fewer --frac-bits widen the range",
            beyond.node,
            beyond.value,
            fp.bound(),
            fp.frac_bits
        ));
    }
}

/// Write `--out` if asked, then print the prediction.
fn print_result(
    model: &Path,
    plan: &Plan,
    mode: Mode,
    format: Format,
    out: Option<&Path>,
    result: &crate::tensor::Tensor,
) -> Result<u8> {
    if let Some(path) = out {
        npy::write_f32(path, &result.to_float()).map_err(Error::output)?;
    }
    let sigmoid = plan.steps.iter().any(|s| s.output == plan.output && matches!(s.op, crate::plan::Op::Sigmoid));
    let node = &plan.output_node;
    let text = match format {
        Format::Text => output::text(node, mode, result, sigmoid),
        Format::Json => output::json(model, node, mode, result, sigmoid),
        Format::Jsonl => output::jsonl(result, sigmoid),
    };
    write_stdout(&text)?;
    Ok(exit::OK)
}
