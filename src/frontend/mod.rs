//! Frontends: from a model file to a [`Plan`], one module per format.
//!
//! This is the boundary. A format decodes its file, picks the output and walks
//! its graph in topological order, handing each node to the [`Builder`] as
//! format-neutral op requests: an [`Origin`] naming the source node (for
//! messages only), the plan [`Op`](crate::plan::Op) and the input [`Slot`]s. The
//! builder folds, checks shapes and creates values and steps; it knows no format.
//! Past this module, nothing knows which format a model came from.
//!
//! [`load`] is the one way every command loads a model: file → decoded graph →
//! output → [`Report`] → feeds → plan.

// Reads models from others: nothing here may panic or overflow on what a model says.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

pub mod builder;
mod curves;
mod fold;
pub mod format;
pub mod onnx;
pub mod savedmodel;
pub mod tf;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

pub use builder::{Bounded, Builder, Known, Slot, TensorList};

use crate::error::Error;
use crate::plan::Plan;

/// Constants larger than this many elements are refused: a few bytes of a hostile
/// file can declare a splatted constant of any size, and folding broadcasts.
pub const MAX_CONST_ELEMENTS: usize = 1 << 28;

/// A dimension of a declared shape: known, or unknown (e.g. a dynamic batch).
pub type Dim = Option<usize>;

/// The source node of an op request, for messages: `Conv2D `conv1/Conv2D``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub node: String,
    pub op_type: String,
}

impl Origin {
    pub fn new(node: impl Into<String>, op_type: impl Into<String>) -> Origin {
        Origin { node: node.into(), op_type: op_type.into() }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} `{}`", self.op_type, self.node)
    }
}

/// `count` little-endian values of `W` bytes each, as both TensorFlow's
/// `tensor_content` and ONNX's `raw_data` store them; `None` when the bytes are
/// not exactly that many (each format says so in its own words).
pub(crate) fn le_values<const W: usize, T>(bytes: &[u8], count: usize, read: impl Fn([u8; W]) -> T) -> Option<Vec<T>> {
    (count.checked_mul(W) == Some(bytes.len()))
        .then(|| bytes.chunks_exact(W).filter_map(|c| <[u8; W]>::try_from(c).ok()).map(read).collect())
}

/// A declared shape as messages print it: `[?, 28, 28, 1]`, or `<unknown rank>`.
pub fn shape_text(shape: Option<&[Dim]>) -> String {
    match shape {
        None => "<unknown rank>".into(),
        Some(dims) => {
            let d: Vec<String> = dims.iter().map(|d| d.map_or("?".into(), |n| n.to_string())).collect();
            format!("[{}]", d.join(", "))
        }
    }
}

/// An input placeholder, as declared in the model.
#[derive(Debug, Clone)]
pub struct Placeholder {
    pub name: String,
    /// The element type's usual name (`float32`), when the model declares one.
    pub dtype: Option<&'static str>,
    /// Is the declared element type one tfe-run feeds: floats (computed as f32),
    /// or integers (token ids, fed as fixed point like floats: exact below 2^24)?
    pub feedable: bool,
    /// `None` when the rank is unknown; `None` dims are unknown (e.g. the batch).
    pub shape: Option<Vec<Dim>>,
    /// A placeholder with a default value need not be fed.
    pub has_default: bool,
}

impl Placeholder {
    pub fn dtype_name(&self) -> &'static str {
        self.dtype.unwrap_or("unknown")
    }

    /// `[?, 28, 28, 1]`, `<unknown rank>`.
    pub fn shape_text(&self) -> String {
        shape_text(self.shape.as_deref())
    }

    /// Does a concrete input shape fit the declared one?
    pub fn accepts(&self, shape: &[usize]) -> bool {
        match &self.shape {
            None => true,
            Some(dims) => dims.len() == shape.len() && dims.iter().zip(shape).all(|(d, &s)| d.is_none_or(|d| d == s)),
        }
    }
}

/// What is fed to a placeholder: the shape of the data, and where it came from
/// (a file name, for messages).
#[derive(Debug, Clone)]
pub struct Feed {
    pub shape: Vec<usize>,
    pub source: String,
}

/// Public numbers fed to placeholders by name (a TF1 graph's `keep_prob`): each
/// is folded at import as a constant, seen by every party in the plan, and never
/// a private input.
pub type Public = BTreeMap<String, f32>;

/// How often an op type occurs among the nodes the output uses, and whether
/// tfe-run imports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpCount {
    pub op_type: String,
    pub count: usize,
    pub supported: bool,
}

/// What a model takes, gives and uses (what `inspect` prints), before any plan.
#[derive(Debug, Clone)]
pub struct Report {
    /// Nodes in the model, and how many of them the output depends on.
    pub nodes: usize,
    pub nodes_used: usize,
    /// The output node.
    pub output: String,
    /// The placeholders the output depends on, in graph order.
    pub placeholders: Vec<Placeholder>,
    /// The names of every placeholder of the model, used or not.
    pub all_placeholders: Vec<String>,
    /// Op types the output uses, sorted by name.
    pub ops: Vec<OpCount>,
    /// Every node the output uses whose op tfe-run does not import, in graph order.
    pub unsupported: Vec<Origin>,
    /// Parameters as Keras counts them: elements of every float constant the output uses.
    pub parameters: usize,
}

impl Report {
    /// Every unsupported op of the model, as one error.
    pub fn check_supported(&self) -> Result<()> {
        if self.unsupported.is_empty() {
            return Ok(());
        }
        let mut by_op: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for n in &self.unsupported {
            by_op.entry(n.op_type.as_str()).or_default().push(n.node.as_str());
        }
        let lines: Vec<String> = self.unsupported.iter().map(|n| format!("  {n}")).collect();
        Err(Error::unsupported(format!(
            "the model uses {} unsupported op type(s) ({}) in {} node(s):\n{}",
            by_op.len(),
            by_op.keys().copied().collect::<Vec<_>>().join(", "),
            self.unsupported.len(),
            lines.join("\n")
        )))
    }

    /// Every fed name must be a placeholder that the output depends on.
    pub fn check_feed_names<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> Result<()> {
        for name in names {
            if !self.placeholders.iter().any(|p| &p.name == name) {
                return Err(Error::bad_input(if self.all_placeholders.contains(name) {
                    format!("placeholder `{name}` does not feed the output `{}`", self.output)
                } else {
                    format!(
                        "the model has no placeholder `{name}`; its placeholders: {}",
                        self.placeholders.iter().map(|p| format!("`{}`", p.name)).collect::<Vec<_>>().join(", ")
                    )
                }));
            }
        }
        Ok(())
    }

    /// The feeds fit the placeholders: every name is one, every placeholder
    /// without a default is fed (an input, or a public number), with a float
    /// input of an accepted shape; a public number feeds a float or bool
    /// placeholder of one element.
    pub fn check_feeds(&self, feeds: &BTreeMap<String, Feed>, public: &Public) -> Result<()> {
        self.check_feed_names(feeds.keys().chain(public.keys()))?;
        if let Some(name) = public.keys().find(|n| feeds.contains_key(*n)) {
            return Err(Error::bad_input(format!("placeholder `{name}` is fed both an input and a public number")));
        }
        for p in self.placeholders.iter().filter(|p| public.contains_key(&p.name)) {
            let one = p.shape.as_ref().is_none_or(|dims| dims.iter().all(|d| d.is_none_or(|d| d == 1)));
            if !matches!(p.dtype, Some("float32" | "float64" | "bool")) || !one {
                return Err(Error::bad_input(format!(
                    "placeholder `{}` is {} {}: a public number feeds a float or bool placeholder of one element",
                    p.name,
                    p.dtype_name(),
                    p.shape_text()
                )));
            }
            // A bool (a TF1 graph's `is_training`) is 0 or 1, as TensorFlow converts a Python number.
            let value = public.get(&p.name).copied().unwrap_or_default();
            if p.dtype == Some("bool") && value != 0.0 && value != 1.0 {
                return Err(Error::bad_input(format!(
                    "placeholder `{}` is bool: feed it --public {}=0 (false) or {}=1 (true), not {value}",
                    p.name, p.name, p.name
                )));
            }
        }
        let unfed: Vec<String> = (self.placeholders.iter())
            .filter(|p| p.dtype.is_some() && !p.has_default && !feeds.contains_key(&p.name))
            .filter(|p| !public.contains_key(&p.name))
            .map(|p| format!("`{}` {} {}", p.name, p.dtype_name(), p.shape_text()))
            .collect();
        if !unfed.is_empty() {
            return Err(Error::bad_input(format!(
                "no input for placeholder(s) {}; feed each with --input NAME=FILE.npy",
                unfed.join(", ")
            )));
        }
        for p in &self.placeholders {
            let Some(feed) = feeds.get(&p.name) else {
                continue;
            };
            if !p.feedable {
                return Err(Error::unsupported(format!(
                    "placeholder `{}` has dtype {}; tfe-run feeds float and integer inputs only",
                    p.name,
                    p.dtype_name()
                )));
            }
            if !p.accepts(&feed.shape) {
                return Err(Error::bad_input(format!(
                    "`{}` has shape {:?}, but placeholder `{}` expects {}",
                    feed.source,
                    feed.shape,
                    p.name,
                    p.shape_text()
                )));
            }
        }
        Ok(())
    }
}

/// A loaded model: its report, and its plan or why there is none.
pub struct Loaded {
    pub report: Report,
    /// A SavedModel's signatures, and the one (and its output key) loaded;
    /// `None` for a GraphDef.
    pub saved_model: Option<SavedModelInfo>,
    pub plan: std::result::Result<Plan, NoPlan>,
    path: std::path::PathBuf,
}

/// What a SavedModel directory offers, and what was taken from it.
#[derive(Debug, Clone)]
pub struct SavedModelInfo {
    pub signatures: Vec<savedmodel::Signature>,
    pub signature: String,
    pub output: String,
}

/// Which output of a model to compute: a GraphDef's node (`--output-node`), or
/// a SavedModel's signature and output key (`--signature`, `--output`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Choice<'a> {
    pub output_node: Option<&'a str>,
    pub saved_model: savedmodel::Choice<'a>,
}

/// Why a loaded model has no plan.
#[derive(Debug)]
pub enum NoPlan {
    /// The model cannot be planned: an unsupported op, feeds that do not fit its
    /// placeholders, a shape that does not check.
    Model(anyhow::Error),
    /// Choosing the feeds failed (an input file, a flag).
    Feeds(anyhow::Error),
}

impl NoPlan {
    pub fn error(&self) -> &anyhow::Error {
        match self {
            NoPlan::Model(e) | NoPlan::Feeds(e) => e,
        }
    }
}

impl Loaded {
    /// The plan; errors of the model are put in the context of its file.
    pub fn into_plan(self) -> Result<Plan> {
        match self.plan {
            Ok(plan) => Ok(plan),
            Err(NoPlan::Model(e)) => Err(e.context(format!("model `{}`", self.path.display()))),
            Err(NoPlan::Feeds(e)) => Err(e),
        }
    }
}

/// A decoded model of some format, its output chosen.
trait Model {
    fn report(&self) -> Result<Report>;
    fn build(&self, report: &Report, feeds: &BTreeMap<String, Feed>, public: &Public) -> Result<Plan>;
}

/// Load the model at `path`: decode it, pick its output (`output_node`, or its
/// single sink), report what it uses, then build the plan for the feeds that
/// `feeds` chooses from the report.
///
/// `feeds` runs only once the model is known to be supported, so that a model
/// that cannot run is the first thing a user learns. An unreadable or
/// undecodable file, or an unknown output node, is the outer error.
pub fn load(
    path: &Path,
    output_node: Option<&str>,
    feeds: impl FnOnce(&Report) -> Result<BTreeMap<String, Feed>>,
) -> Result<Loaded> {
    load_public(path, output_node, &Public::new(), feeds)
}

/// [`load`], with public numbers fed to some placeholders.
pub fn load_public(
    path: &Path,
    output_node: Option<&str>,
    public: &Public,
    feeds: impl FnOnce(&Report) -> Result<BTreeMap<String, Feed>>,
) -> Result<Loaded> {
    load_choice(path, Choice { output_node, ..Choice::default() }, public, feeds)
}

/// [`load_public`] of the output `choice` names: a SavedModel directory's
/// signature and output key, or a GraphDef's output node.
pub fn load_choice(
    path: &Path,
    choice: Choice<'_>,
    public: &Public,
    feeds: impl FnOnce(&Report) -> Result<BTreeMap<String, Feed>>,
) -> Result<Loaded> {
    let sm = choice.saved_model;
    if path.is_dir() {
        if !savedmodel::is_saved_model(path) {
            return Err(format::directory(path));
        }
        if let Some(node) = choice.output_node {
            return Err(Error::bad_input(format!(
                "--output-node {node}: `{}` is a SavedModel directory, whose outputs are chosen by key with --output KEY",
                path.display()
            )));
        }
        let frozen = savedmodel::load(path, sm)?;
        let info = SavedModelInfo { signatures: frozen.signatures, signature: frozen.signature, output: frozen.output };
        let mut loaded = plan_model(&frozen.model, path, public, feeds)?;
        loaded.saved_model = Some(info);
        return Ok(loaded);
    }
    refuse_saved_model_choice(path, sm)?;
    let bytes = format::read(path)?;
    load_bytes_public(&bytes, path, choice.output_node, public, feeds)
}

/// A signature or output key chosen for a model that is a file, not a SavedModel directory.
fn refuse_saved_model_choice(path: &Path, sm: savedmodel::Choice<'_>) -> Result<()> {
    match [sm.signature.map(|_| "--signature"), sm.output.map(|_| "--output")].into_iter().flatten().next() {
        Some(flag) => Err(Error::bad_input(format!(
            "{flag} is for SavedModel directories; `{}` is a file (a GraphDef's output is chosen with --output-node NAME)",
            path.display()
        ))),
        None => Ok(()),
    }
}

/// Where a model is read from: a file or SavedModel directory, or the bytes of
/// a model file already in memory (the Python package's `model=bytes`), which
/// `name` names in messages.
#[derive(Debug, Clone)]
pub enum Source {
    Path(PathBuf),
    Bytes { name: PathBuf, bytes: Vec<u8> },
}

impl Source {
    /// The path messages name the model by.
    pub fn path(&self) -> &Path {
        match self {
            Source::Path(path) => path,
            Source::Bytes { name, .. } => name,
        }
    }
}

impl From<PathBuf> for Source {
    fn from(path: PathBuf) -> Source {
        Source::Path(path)
    }
}

/// [`load_choice`] of a model file or directory, or of a model's bytes.
pub fn load_source(
    source: &Source,
    choice: Choice<'_>,
    public: &Public,
    feeds: impl FnOnce(&Report) -> Result<BTreeMap<String, Feed>>,
) -> Result<Loaded> {
    match source {
        Source::Path(path) => load_choice(path, choice, public, feeds),
        Source::Bytes { name, bytes } => {
            refuse_saved_model_choice(name, choice.saved_model)?;
            load_bytes_public(bytes, name, choice.output_node, public, feeds)
        }
    }
}

/// [`load`] of a model's bytes, as read from `path` (which names the model in
/// messages).
pub fn load_bytes(
    bytes: &[u8],
    path: &Path,
    output_node: Option<&str>,
    feeds: impl FnOnce(&Report) -> Result<BTreeMap<String, Feed>>,
) -> Result<Loaded> {
    load_bytes_public(bytes, path, output_node, &Public::new(), feeds)
}

/// [`load_bytes`], with public numbers fed to some placeholders.
pub fn load_bytes_public(
    bytes: &[u8],
    path: &Path,
    output_node: Option<&str>,
    public: &Public,
    feeds: impl FnOnce(&Report) -> Result<BTreeMap<String, Feed>>,
) -> Result<Loaded> {
    let model = match format::recognise(path, bytes)? {
        format::Format::GraphDef => tf::TfModel::decode(bytes, path, output_node)?,
        format::Format::TextGraphDef => tf::TfModel::decode_text(bytes, path, output_node)?,
        format::Format::Onnx => {
            return plan_model(&onnx::OnnxModel::decode(bytes, path, output_node)?, path, public, feeds);
        }
    };
    plan_model(&model, path, public, feeds)
}

/// Report what a decoded model uses, then plan it for the feeds.
fn plan_model(
    model: &impl Model,
    path: &Path,
    public: &Public,
    feeds: impl FnOnce(&Report) -> Result<BTreeMap<String, Feed>>,
) -> Result<Loaded> {
    let report = model.report()?;
    let plan = match report.check_supported() {
        Err(e) => Err(NoPlan::Model(e)),
        Ok(()) => match feeds(&report) {
            Err(e) => Err(NoPlan::Feeds(e)),
            Ok(feeds) => model.build(&report, &feeds, public).map_err(NoPlan::Model),
        },
    };
    Ok(Loaded { report, saved_model: None, plan, path: path.to_path_buf() })
}
