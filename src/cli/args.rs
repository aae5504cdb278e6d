//! Command-line arguments (clap), validated into a [`RunConfig`] before any work.

use std::collections::BTreeMap;
use std::ffi::OsString;
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
  tfe-run train --features a.npy --labels a_y.npy --features b.npy --labels b_y.npy --out lr.pb

Parties on separate hosts (see docs/DEPLOYMENT.md):
  tfe-run certs --config cluster.json --out certs
  tfe-run serve --config cluster.json --party server0 --certs certs     (and server1, crypto-producer)
  tfe-run model.pb input.npy --config cluster.json --certs certs
  tfe-run deploy model.pb --config cluster.json --certs certs --name mnist
  tfe-run predict --config cluster.json --certs certs --model mnist input.npy
  tfe-run status --config cluster.json --certs certs
  tfe-run contribute --config cluster.json --certs certs --name a --features a.npy --labels a_y.npy
  tfe-run train --config cluster.json --certs certs --data a --data b --out lr.pb

Exit codes:
  0  success
  1  unexpected failure (e.g. cannot write --out)
  2  usage error or bad input file (unreadable, wrong shape, NaN, wrong dtype)
  3  the model file is not a valid TensorFlow GraphDef
  4  the model uses ops, dtypes or shapes tfe-run does not support
  5  a party could not be reached, refused, failed or timed out (remote mode)";

/// `tfe-run --version`: the crate's version and the commit it was built from
/// (`-dirty` with uncommitted changes, `unknown` outside a git checkout; build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("TFE_RUN_COMMIT"), ")");

#[derive(Debug, Parser)]
#[command(
    name = "tfe-run",
    version = VERSION,
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
    /// No progress bars and no information lines on stderr; errors and warnings are still printed.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to color tfe-run's messages on stderr: auto colors a terminal unless NO_COLOR is set.
    #[arg(long, value_name = "WHEN", value_enum, global = true, default_value_t = clap::ColorChoice::Auto)]
    pub color: clap::ColorChoice,
}

/// Move `-q`/`--quiet` and `--color WHEN` given before a subcommand to just
/// after it, and return the first argument that is neither (the subcommand, or
/// the model of a prediction). clap takes any flag before a subcommand for one
/// of the prediction's own (`args_conflicts_with_subcommands`, which lets
/// `tfe-run MODEL INPUT` have no subcommand), so `tfe-run -q inspect m.pb`
/// would read a model named `inspect`.
pub fn hoist_global_flags(args: Vec<OsString>) -> (Vec<OsString>, Option<OsString>) {
    use clap::CommandFactory;
    let mut leading = 0;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        match arg.to_str() {
            Some("-q" | "--quiet") => leading += 1,
            Some("--color") => {
                leading += 1;
                if rest.next().is_some() {
                    leading += 1;
                }
            }
            Some(a) if a.starts_with("--color=") => leading += 1,
            _ => break,
        }
    }
    let first = args.get(1 + leading).cloned();
    let is_command = first
        .as_ref()
        .and_then(|f| f.to_str())
        .is_some_and(|f| Cli::command().get_subcommands().any(|c| c.get_name() == f));
    if leading == 0 || !is_command {
        return (args, first);
    }
    let mut args = args;
    let globals: Vec<OsString> = args.drain(1..1 + leading).collect();
    args.splice(2..2, globals);
    (args, first)
}

/// `--color WHEN` read from the raw arguments, before clap parses them, so
/// that clap's own usage errors are colored (or not) as asked.
pub fn color_in_args(args: &[OsString]) -> Option<clap::ColorChoice> {
    use clap::ValueEnum;
    let mut it = args.iter().skip(1).map(|a| a.to_str().unwrap_or(""));
    while let Some(arg) = it.next() {
        let value = match arg {
            "--" => return None,
            "--color" => it.next()?,
            _ => match arg.strip_prefix("--color=") {
                Some(v) => v,
                None => continue,
            },
        };
        return clap::ColorChoice::from_str(value, false).ok();
    }
    None
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a model's inputs, output node, ops (whether and how each runs under Pond) and size.
    Inspect(InspectArgs),
    /// List the TensorFlow ops tfe-run imports, what each accepts and how it runs
    /// under Pond (the table of docs/OPS.md, in Markdown).
    Ops,
    /// Run one party (server0, server1 or crypto-producer) until stopped.
    Serve(ServeArgs),
    /// Make a development CA and a certificate and key for every party.
    Certs(CertsArgs),
    /// As the model owner: secret-share a model's weights with the servers, which keep them.
    Deploy(DeployArgs),
    /// As a client: get predictions from a model deployed on the servers.
    Predict(PredictArgs),
    /// Ask each serving party for its health, release, limits and what it holds
    /// (exit 5 if any is down).
    Status(super::status::StatusArgs),
    /// Train logistic regression on several data owners' secret-shared rows;
    /// write the model as a frozen GraphDef (and .npy weights).
    Train(super::train::TrainArgs),
    /// As a data owner: secret-share your rows with the servers, which keep them
    /// for training (`tfe-run train --data NAME`).
    Contribute(super::train::ContributeArgs),
    /// Print a completion script for SHELL, generated from this parser
    /// (e.g. `tfe-run completions bash > /etc/bash_completion.d/tfe-run`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from this parser (`tfe-run man > tfe-run.1`).
    Man,
}

/// How to reach the parties on other hosts.
#[derive(Debug, Args, Clone)]
pub struct NetworkArgs {
    /// Cluster config: tf-encrypted's config.json (player name -> "host:port") or TOML.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder with ca.pem and this party's NAME.pem/NAME.key (made by `tfe-run certs`).
    #[arg(long, value_name = "DIR")]
    pub certs: Option<PathBuf>,
    /// Run without TLS: nothing is encrypted or authenticated. Experiments only.
    #[arg(long)]
    pub insecure: bool,
    /// Deadline for any one message from another party, in seconds [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Act as this principal: use NAME.pem/NAME.key from --certs (made by
    /// `certs --client NAME` or `--model-owner NAME`) for the command's role
    /// [default: the role's own pair, client.pem or model-owner.pem].
    #[arg(long = "as", value_name = "NAME")]
    pub principal: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub net: NetworkArgs,
    /// Which party to run: server0, server1 or crypto-producer (server2).
    #[arg(long, value_name = "NAME")]
    pub party: String,
    /// Listen here instead of the party's address in the config (e.g. 0.0.0.0:4440).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Refuse a session whose estimated peak memory exceeds this (e.g. 512M, 8G).
    #[arg(long, value_name = "SIZE", default_value = "8G", value_parser = parse_size)]
    pub max_memory: u64,
    /// Refuse a new session while this many are running.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sessions: u32,
    /// At most this many connections wait for their TLS handshake and hello; one
    /// more closes the one that has waited longest.
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_handshakes: u32,
    /// Close a connection that has not finished its TLS handshake and hello by then.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub handshake_timeout: f64,
    /// Per session, the messages that arrived before the party asked for them
    /// (a quarter per connection): a connection over its share is not read, and a
    /// receive waiting behind it fails.
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_size)]
    pub max_session_buffer: u64,
    /// How long a peer may take to connect to a session, from its start.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub join_timeout: f64,
    /// Serve metrics (Prometheus text format, GET /metrics) and health (GET
    /// /healthz) on this address, plain HTTP (e.g. 127.0.0.1:9100); they hold
    /// nothing private.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<String>,
    /// How to write the log on stderr: text lines, or one JSON object per line.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = crate::remote::log::LogFormat::Text)]
    pub log_format: crate::remote::log::LogFormat,
    /// After SIGTERM or SIGINT, how long running sessions may take to end
    /// before they are cut (new sessions are refused at once).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub drain_timeout: f64,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// The cluster config (its parties get certificates).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Folder to write ca.pem and NAME.pem/NAME.key per party into.
    #[arg(short, long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace existing files there (a new CA: hosts with the old certificates can no longer join).
    #[arg(long)]
    pub force: bool,
    /// Also issue a client principal of this name (NAME.pem/NAME.key, used with
    /// `--as NAME`); repeat for several.
    #[arg(long = "client", value_name = "NAME")]
    pub clients: Vec<String>,
    /// Also issue a model-owner principal of this name; repeat for several.
    #[arg(long = "model-owner", value_name = "NAME")]
    pub model_owners: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Frozen TensorFlow GraphDef (.pb), or a SavedModel directory.
    pub model: PathBuf,
    #[command(flatten)]
    pub net: NetworkArgs,
    /// The name clients use with `tfe-run predict --model`.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Rows per prediction (default: the placeholder's own batch if fixed, else 1).
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// A SavedModel directory's signature to run [default: serving_default].
    #[arg(long, value_name = "NAME")]
    pub signature: Option<String>,
    /// A SavedModel signature's output to compute, by key (needed when it has several).
    #[arg(long = "output", value_name = "KEY")]
    pub output_key: Option<String>,
    /// The node whose value is the prediction (default: the graph's sink).
    #[arg(long, value_name = "NAME")]
    pub output_node: Option<String>,
    /// Fractional bits of the fixed-point encoding.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub frac_bits: u32,
    /// The comparison protocol of the deployed program (see `tfe-run --help`).
    #[arg(long, value_name = "PROTOCOL", default_value_t = crate::protocol::Comparison::Bitwise)]
    pub comparison: crate::protocol::Comparison,
    /// Replace the model deployed under --name (only the principal that deployed
    /// it may; without this flag a deployed name is refused).
    #[arg(long)]
    pub replace: bool,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub net: NetworkArgs,
    /// The deployed model's name.
    #[arg(long = "model", value_name = "NAME")]
    pub name: String,
    /// Input array (.npy) for the model's placeholder (the one not fed with --input).
    pub input: Option<PathBuf>,
    /// Feed a placeholder by name; repeat for several.
    #[arg(long = "input", value_name = "NAME=FILE.npy", value_parser = parse_feed)]
    pub feeds: Vec<(String, PathBuf)>,
    /// Print per-party traffic, rounds and time to stderr.
    #[arg(long)]
    pub stats: bool,
    /// How to print the prediction.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write the output tensor to this file (float32 .npy).
    #[arg(short, long, value_name = "FILE.npy")]
    pub out: Option<PathBuf>,
    /// Refused, with what to do instead: a deployed model computes the output
    /// (a SavedModel's signature and key, a GraphDef's node) chosen at `deploy`.
    #[arg(long, value_name = "NAME", hide = true)]
    pub signature: Option<String>,
    #[arg(long = "output", value_name = "KEY", hide = true)]
    pub output_key: Option<String>,
    #[arg(long, value_name = "NAME", hide = true)]
    pub output_node: Option<String>,
    /// Keep the public description of each deployment predicted with here, so
    /// that the next prediction names it at once instead of asking server1 (one
    /// round trip fewer) [default: $XDG_CACHE_HOME/tfe-run/deployments, else
    /// ~/.cache/tfe-run/deployments].
    #[arg(long, value_name = "DIR", env = crate::remote::descriptions::CACHE_DIR_ENV)]
    pub cache_dir: Option<PathBuf>,
    /// Ask server1 for the deployment's description every time, and keep none.
    #[arg(long)]
    pub no_cache: bool,
}

impl PredictArgs {
    /// Where descriptions of deployments are kept, if anywhere.
    pub fn descriptions(&self) -> Option<crate::remote::descriptions::Descriptions> {
        if self.no_cache {
            return None;
        }
        crate::remote::descriptions::Descriptions::chosen(self.cache_dir.clone())
    }

    /// `predict` runs what was deployed: a signature, output key or output node
    /// is chosen by the model owner's `deploy`, and a client naming one is told so
    /// rather than silently given the deployed one.
    pub fn refuse_output_choice(&self) -> Result<()> {
        let given = [
            self.signature.as_ref().map(|v| format!("--signature {v}")),
            self.output_key.as_ref().map(|v| format!("--output {v}")),
            self.output_node.as_ref().map(|v| format!("--output-node {v}")),
        ];
        match given.into_iter().flatten().next() {
            None => Ok(()),
            Some(flag) => Err(Error::bad_arg(
                flag,
                format!(
                    "model `{}` computes the output chosen when it was deployed: the model owner picks a \
                     SavedModel's signature and output at deploy (`tfe-run deploy DIR --name NAME --signature \
                     SIG --output KEY`), and deploys each one needed under its own name",
                    self.name
                ),
            )),
        }
    }
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Frozen TensorFlow GraphDef (.pb), or a SavedModel directory.
    pub model: PathBuf,
    /// A SavedModel directory's signature to run [default: serving_default].
    #[arg(long, value_name = "NAME")]
    pub signature: Option<String>,
    /// A SavedModel signature's output to compute, by key (needed when it has several).
    #[arg(long = "output", value_name = "KEY")]
    pub output_key: Option<String>,
    /// Inspect the graph as if this node were the output.
    #[arg(long, value_name = "NAME")]
    pub output_node: Option<String>,
    /// Also list the plan's steps (for a batch of 1).
    #[arg(long)]
    pub plan: bool,
    /// Inspect the model with a placeholder of one element fed a public number,
    /// as a run with the same `--public` would plan it.
    #[arg(long = "public", value_name = "NAME=NUMBER", value_parser = parse_public)]
    pub public: Vec<(String, f32)>,
    /// How to print the report.
    #[arg(short, long, value_enum, default_value_t = InspectFormat::Text)]
    pub format: InspectFormat,
}

/// How `inspect` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InspectFormat {
    /// For people: inputs, output, one line per op type, the plan and how its steps run.
    Text,
    /// One JSON object with the same facts (`inputs`, `output`, `ops`, `unsupported`, `plan`), for scripts.
    Json,
}

impl InspectArgs {
    /// The `--public` numbers, each placeholder at most once.
    pub fn public(&self) -> Result<crate::frontend::Public> {
        let mut public = crate::frontend::Public::new();
        for (name, value) in &self.public {
            if public.insert(name.clone(), *value).is_some() {
                return Err(Error::bad_input(format!("placeholder `{name}` is fed twice")));
            }
        }
        Ok(public)
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Frozen TensorFlow GraphDef (.pb), or a SavedModel directory.
    #[arg(required = true)]
    pub model: Option<PathBuf>,
    /// Input array (.npy) for the model's placeholder (the one not fed with --input).
    pub input: Option<PathBuf>,
    /// Feed a placeholder by name; repeat for several. The first axis is the batch.
    #[arg(long = "input", value_name = "NAME=FILE.npy", value_parser = parse_feed)]
    pub feeds: Vec<(String, PathBuf)>,
    /// Feed a placeholder of one element a public number (a TF1 graph's
    /// keep_prob=1.0): folded into the plan, seen by every party, never private.
    #[arg(long = "public", value_name = "NAME=NUMBER", value_parser = parse_public)]
    pub public: Vec<(String, f32)>,
    /// Evaluate in the clear, with no protocol: the reference for secure results.
    #[arg(long)]
    pub plaintext: bool,
    /// Fractional bits of the fixed-point encoding (secure runs).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub frac_bits: u32,
    /// The comparison protocol of secure runs: bitwise (8 rounds a comparison,
    /// little dealer traffic) or fss (1 round, ~2 KB of dealer keys an element).
    #[arg(long, value_name = "PROTOCOL", default_value_t = crate::protocol::Comparison::Bitwise)]
    pub comparison: crate::protocol::Comparison,
    /// Print per-party traffic, rounds and time, and a per-layer breakdown, to stderr.
    #[arg(long)]
    pub stats: bool,
    /// A SavedModel directory's signature to run [default: serving_default].
    #[arg(long, value_name = "NAME")]
    pub signature: Option<String>,
    /// A SavedModel signature's output to compute, by key (needed when it has several).
    #[arg(long = "output", value_name = "KEY")]
    pub output_key: Option<String>,
    /// The node whose value is the prediction (default: the graph's sink).
    #[arg(long, value_name = "NAME")]
    pub output_node: Option<String>,
    /// How to print the prediction.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write the output tensor to this file (float32 .npy, the output's shape).
    #[arg(short, long, value_name = "FILE.npy")]
    pub out: Option<PathBuf>,
    /// Run with the parties of a cluster instead of in this process (see `serve`).
    #[command(flatten)]
    pub net: NetworkArgs,
    /// Refuse a run whose estimated peak memory exceeds this (e.g. 512M, 8G).
    #[arg(long, value_name = "SIZE", default_value = "8G", value_parser = parse_size)]
    pub max_memory: u64,
}

/// A memory size: bytes, or with a K, M, G or T suffix (powers of 1024).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], t[i..].trim_end_matches(['B', 'b', 'i'])),
        None => (t, ""),
    };
    let scale: u64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("`{s}` is not a size (e.g. 512M, 8G)")),
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n * (scale as f64) < 1e19 => Ok((n * scale as f64) as u64),
        _ => Err(format!("`{s}` is not a size (e.g. 512M, 8G)")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per input row: the predicted class and the output values.
    Text,
    /// One JSON object (`model`, `mode`, `output_node`, `shape`, `rows`), for scripts.
    Json,
    /// JSON Lines: one object per input row (`row`, `class`, `values`), for streams.
    Jsonl,
}

fn parse_feed(s: &str) -> std::result::Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_string(), PathBuf::from(path))),
        _ => Err(format!("`{s}` is not NAME=FILE.npy")),
    }
}

fn parse_public(s: &str) -> std::result::Result<(String, f32), String> {
    match s.split_once('=').map(|(name, v)| (name, v.parse::<f32>())) {
        Some((name, Ok(v))) if !name.is_empty() && v.is_finite() => Ok((name.to_string(), v)),
        _ => Err(format!("`{s}` is not NAME=NUMBER")),
    }
}

/// How the prediction is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plaintext,
    /// Under Pond, with all parties as threads of this process.
    Secure,
    /// Under Pond, with the servers and the crypto producer on other hosts.
    Remote,
}

/// A validated prediction request.
#[derive(Debug)]
pub struct RunConfig {
    pub model: crate::frontend::Source,
    /// The positional input, for the one placeholder not named in `feeds`.
    pub input: Option<crate::npy::Input>,
    pub feeds: BTreeMap<String, crate::npy::Input>,
    /// `--public NAME=NUMBER`: placeholders fed a public number.
    pub public: BTreeMap<String, f32>,
    pub mode: Mode,
    pub fixed_point: crate::ring::FixedPoint,
    pub comparison: crate::protocol::Comparison,
    pub stats: bool,
    pub output_node: Option<String>,
    /// `--signature`, `--output`: a SavedModel's signature and output key.
    pub signature: Option<String>,
    pub output_key: Option<String>,
    pub format: Format,
    pub out: Option<PathBuf>,
    pub remote: Option<crate::remote::driver::Remote>,
    pub max_memory: u64,
}

impl NetworkArgs {
    /// The cluster and how to reach it, or `None` without `--config`.
    pub fn remote(&self) -> Result<Option<crate::remote::driver::Remote>> {
        let Some(path) = &self.config else {
            if self.certs.is_some() || self.insecure || self.timeout.is_some() || self.principal.is_some() {
                return Err(Error::bad_input("--certs, --insecure, --timeout and --as need --config"));
            }
            return Ok(None);
        };
        if let Some(name) = &self.principal {
            if self.insecure {
                return Err(Error::bad_input(format!(
                    "--as {name} picks a certificate: without TLS (--insecure) there are no principals"
                )));
            }
            if crate::transport::Party::ALL.iter().all(|p| p.name() != name) {
                crate::transport::tls::check_principal_name(name)?;
            }
        }
        let cluster = crate::cluster::Cluster::load(path)?;
        let security = crate::remote::Security::choose(self.certs.as_deref(), cluster.certs.as_deref(), self.insecure)?;
        let timeout = self.timeout()?.or(cluster.timeout).unwrap_or(crate::cluster::DEFAULT_TIMEOUT);
        let principal = self.principal.clone();
        Ok(Some(crate::remote::driver::Remote { cluster, security, timeout, principal, descriptions: None }))
    }

    pub fn timeout(&self) -> Result<Option<std::time::Duration>> {
        match self.timeout {
            None => Ok(None),
            Some(t) if t.is_finite() && t > 0.0 && t <= 86_400.0 => Ok(Some(std::time::Duration::from_secs_f64(t))),
            Some(t) => Err(Error::bad_arg(format!("--timeout {t}"), "must be between 0 and 86400 seconds")),
        }
    }

    /// As [`NetworkArgs::remote`], but `--config` is required.
    pub fn required(&self, command: &str) -> Result<crate::remote::driver::Remote> {
        self.remote()?.ok_or_else(|| Error::bad_input(format!("`tfe-run {command}` needs --config FILE")))
    }
}

impl RunArgs {
    pub fn validate(self) -> Result<RunConfig> {
        let model = self.model.ok_or_else(|| Error::bad_input("no MODEL given"))?;
        let mut feeds = BTreeMap::new();
        for (name, path) in self.feeds {
            if feeds.insert(name.clone(), crate::npy::Input::File(path)).is_some() {
                return Err(Error::bad_input(format!("--input {name}=... is given twice")));
            }
        }
        let mut public = BTreeMap::new();
        for (name, value) in self.public {
            if feeds.contains_key(&name) || public.insert(name.clone(), value).is_some() {
                return Err(Error::bad_input(format!("placeholder `{name}` is fed twice")));
            }
        }
        if self.input.is_none() && feeds.is_empty() {
            return Err(Error::bad_input("no input given: pass INPUT.npy (or --input NAME=FILE.npy)"));
        }
        let remote = self.net.remote()?;
        if remote.is_some() && self.plaintext {
            return Err(Error::bad_input("--plaintext runs locally; it cannot be combined with --config"));
        }
        Ok(RunConfig {
            model: crate::frontend::Source::Path(model),
            input: self.input.map(crate::npy::Input::File),
            feeds,
            public,
            mode: match (self.plaintext, remote.is_some()) {
                (true, _) => Mode::Plaintext,
                (false, true) => Mode::Remote,
                (false, false) => Mode::Secure,
            },
            fixed_point: crate::ring::FixedPoint::new(self.frac_bits)?,
            comparison: self.comparison,
            stats: self.stats,
            output_node: self.output_node,
            signature: self.signature,
            output_key: self.output_key,
            format: self.format,
            out: self.out,
            remote,
            max_memory: self.max_memory,
        })
    }
}

impl RunConfig {
    /// Which output of the model to compute.
    pub fn choice(&self) -> crate::frontend::Choice<'_> {
        choice(self.output_node.as_deref(), self.signature.as_deref(), self.output_key.as_deref())
    }
}

impl InspectArgs {
    /// Which output of the model to inspect: the first of a signature's several
    /// unless one is named.
    pub fn choice(&self) -> crate::frontend::Choice<'_> {
        let mut c = choice(self.output_node.as_deref(), self.signature.as_deref(), self.output_key.as_deref());
        c.saved_model.first_output = true;
        c
    }
}

impl DeployArgs {
    pub fn choice(&self) -> crate::frontend::Choice<'_> {
        choice(self.output_node.as_deref(), self.signature.as_deref(), self.output_key.as_deref())
    }
}

fn choice<'a>(
    output_node: Option<&'a str>,
    signature: Option<&'a str>,
    output: Option<&'a str>,
) -> crate::frontend::Choice<'a> {
    crate::frontend::Choice {
        output_node,
        saved_model: crate::frontend::savedmodel::Choice { signature, output, first_output: false },
    }
}
