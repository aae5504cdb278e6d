//! Command-line arguments (clap), validated into a [`RunConfig`] before any work.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::Error;

const AFTER_HELP: &str = "\
Examples:
  tfe-run testdata/mnist_model.pb testdata/mnist_input.npy
  tfe-run --stats testdata/mnist_model.pb testdata/mnist_batch100.npy
  tfe-run --plaintext --format json model.pb batch.npy
  tfe-run model.pb a.npy --input Placeholder_1=b.npy --out logits.npy
  tfe-run inspect model.pb

Exit codes:
  0  success
  1  unexpected failure (e.g. cannot write --out)
  2  usage error or bad input file (unreadable, wrong shape, NaN, wrong dtype)
  3  the model file is not a valid TensorFlow GraphDef
  4  the model uses ops, dtypes or shapes tfe-run does not support";

#[derive(Debug, Parser)]
#[command(
    name = "tfe-run",
    version,
    about = "Private inference on frozen TensorFlow graphs (Pond: two servers and a crypto producer).",
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a model's inputs, output node, ops (and whether each is supported) and size.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Frozen TensorFlow GraphDef (.pb).
    pub model: PathBuf,
    /// Inspect the graph as if this node were the output.
    #[arg(long, value_name = "NAME")]
    pub output_node: Option<String>,
    /// Also list the plan's steps (for a batch of 1).
    #[arg(long)]
    pub plan: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Frozen TensorFlow GraphDef (.pb).
    #[arg(required = true)]
    pub model: Option<PathBuf>,
    /// Input array (.npy) for the model's placeholder (the one not fed with --input).
    pub input: Option<PathBuf>,
    /// Feed a placeholder by name; repeat for several. The first axis is the batch.
    #[arg(long = "input", value_name = "NAME=FILE.npy", value_parser = parse_feed)]
    pub feeds: Vec<(String, PathBuf)>,
    /// Evaluate in the clear, with no protocol: the reference for secure results.
    #[arg(long)]
    pub plaintext: bool,
    /// Fractional bits of the fixed-point encoding (secure runs).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub frac_bits: u32,
    /// Print per-party traffic, rounds and time, and a per-layer breakdown, to stderr.
    #[arg(long)]
    pub stats: bool,
    /// The node whose value is the prediction (default: the graph's sink).
    #[arg(long, value_name = "NAME")]
    pub output_node: Option<String>,
    /// How to print the prediction.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write the output tensor to this file (float32 .npy, the output's shape).
    #[arg(long, value_name = "FILE.npy")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per input row: the predicted class and the output values.
    Text,
    /// One JSON object, for scripts.
    Json,
}

fn parse_feed(s: &str) -> std::result::Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_string(), PathBuf::from(path))),
        _ => Err(format!("`{s}` is not NAME=FILE.npy")),
    }
}

/// How the prediction is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plaintext,
    /// Under Pond, with all parties as threads of this process.
    Secure,
}

/// A validated prediction request.
#[derive(Debug)]
pub struct RunConfig {
    pub model: PathBuf,
    /// The positional input, for the one placeholder not named in `feeds`.
    pub input: Option<PathBuf>,
    pub feeds: BTreeMap<String, PathBuf>,
    pub mode: Mode,
    pub fixed_point: crate::ring::FixedPoint,
    pub stats: bool,
    pub output_node: Option<String>,
    pub format: Format,
    pub out: Option<PathBuf>,
}

impl RunArgs {
    pub fn validate(self) -> Result<RunConfig> {
        let model = self.model.ok_or_else(|| Error::bad_input("no MODEL given"))?;
        let mut feeds = BTreeMap::new();
        for (name, path) in self.feeds {
            if feeds.insert(name.clone(), path).is_some() {
                return Err(Error::bad_input(format!("--input {name}=... is given twice")));
            }
        }
        if self.input.is_none() && feeds.is_empty() {
            return Err(Error::bad_input("no input given: pass INPUT.npy (or --input NAME=FILE.npy)"));
        }
        Ok(RunConfig {
            model,
            input: self.input,
            feeds,
            mode: if self.plaintext { Mode::Plaintext } else { Mode::Secure },
            fixed_point: crate::ring::FixedPoint::new(self.frac_bits)?,
            stats: self.stats,
            output_node: self.output_node,
            format: self.format,
            out: self.out,
        })
    }
}
