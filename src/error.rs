//! The errors a user sees, and the exit codes they map to.
//!
//! Errors travel as `anyhow::Error` so every layer can add context ("while importing
//! model.pb", "node `conv1/Conv2D`"); the root cause is an [`Error`], whose variant
//! says what failed, with the file, node, op, shapes or party at fault, and decides
//! the exit code ([`Error::exit_code`], the one table; [`exit_code_of`] for a whole
//! chain). `main` prints the whole chain with `{:#}`.

use std::path::{Path, PathBuf};

/// What kind of failure in the user's own arguments and files. A party's
/// failure has no category: it is not the user's to fix, and what a party
/// tells the others about its own failure ([`crate::runtime::abort_reason`])
/// names only these categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// A command-line argument or an input file is wrong (exit code 2).
    BadInput,
    /// The model file is not a readable, well-formed GraphDef (exit code 3).
    InvalidModel,
    /// The model is a valid graph that tfe-run cannot run: an unsupported op,
    /// dtype or attribute, or shapes that do not check (exit code 4).
    Unsupported,
}

impl Category {
    /// The process exit code documented in the README, docs/CLI.md and `--help`.
    pub fn exit_code(self) -> u8 {
        Error::of(self, String::new()).exit_code()
    }
}

/// Process exit codes.
pub mod exit {
    /// The prediction (or inspection) succeeded.
    pub const OK: u8 = 0;
    /// An unexpected failure: an I/O error writing the output, an internal error.
    pub const FAILURE: u8 = 1;
    /// Usage error or bad input file (also what clap uses for usage errors).
    pub const BAD_INPUT: u8 = 2;
    /// The model file cannot be read as a TensorFlow GraphDef.
    pub const INVALID_MODEL: u8 = 3;
    /// The model uses ops, dtypes or shapes tfe-run does not support.
    pub const UNSUPPORTED: u8 = 4;
    /// Remote mode: a party could not be reached, refused the session, failed or timed out.
    pub const PARTY: u8 = 5;
}

/// What failed, and where. Each variant's text names what its fields name
/// (the flag or file, the model file, the node and its op, the party), in the
/// form the messages of tfe-run have always had: `Conv2D `conv1/Conv2D`: ...`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command-line argument or an input file is wrong. `what` is the flag
    /// with its value, or the file, as the user wrote it.
    #[error("{}", prefixed(&[what.as_deref()], reason))]
    BadInput { what: Option<String>, reason: String },
    /// The model file is not a readable, well-formed graph.
    #[error("{}", prefixed(&[file.as_deref().map(model_file).as_deref(), place(op, node).as_deref()], reason))]
    InvalidModel { file: Option<PathBuf>, node: Option<String>, op: Option<String>, reason: String },
    /// A valid graph that tfe-run cannot run: an op, dtype or attribute it does
    /// not support.
    #[error("{}", prefixed(&[place(op, node).as_deref()], reason))]
    Unsupported { node: Option<String>, op: Option<String>, reason: String },
    /// Shapes that do not check at a node: `reason` says how they disagree,
    /// `shapes` are the operands' shapes.
    #[error("{}", shape_text(op, node, shapes, reason))]
    Shape { node: String, op: String, shapes: Vec<Vec<usize>>, reason: String },
    /// A party refused, failed, timed out or could not be reached. The text is
    /// `reason` when it names the party, else `party: reason`.
    #[error("{}", party_text(party, reason))]
    Party { party: String, reason: String },
    /// This process could not write its output (`--out`, an exported model):
    /// its own failure, also in remote mode, where the parties have done
    /// their part.
    #[error(transparent)]
    Output(anyhow::Error),
    /// A write to stdout failed. A closed stdout (`tfe-run ... | head`) is no
    /// failure; a peer that closed its connection is a broken pipe too, but
    /// never this one.
    #[error("cannot write to stdout: {0}")]
    Stdout(#[source] std::io::Error),
}

impl Error {
    /// The process exit code of this failure, as documented in the README.
    /// The one place where what failed becomes a number.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::BadInput { .. } => exit::BAD_INPUT,
            Error::InvalidModel { .. } => exit::INVALID_MODEL,
            Error::Unsupported { .. } | Error::Shape { .. } => exit::UNSUPPORTED,
            Error::Party { .. } => exit::PARTY,
            Error::Stdout(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
            Error::Output(_) | Error::Stdout(_) => exit::FAILURE,
        }
    }

    /// Is this a write to a stdout its reader has closed?
    pub fn is_closed_stdout(&self) -> bool {
        self.exit_code() == exit::OK
    }

    /// The category of a failure in the user's arguments and files; `None`
    /// for a party's.
    pub fn category(&self) -> Option<Category> {
        match self {
            Error::BadInput { .. } => Some(Category::BadInput),
            Error::InvalidModel { .. } => Some(Category::InvalidModel),
            Error::Unsupported { .. } | Error::Shape { .. } => Some(Category::Unsupported),
            Error::Party { .. } | Error::Output(_) | Error::Stdout(_) => None,
        }
    }

    /// A bad argument or input file, said in a sentence of its own.
    pub fn bad_input(message: impl Into<String>) -> anyhow::Error {
        Self::of(Category::BadInput, message.into()).into()
    }

    /// A model file that cannot be read, said in a sentence of its own.
    pub fn invalid_model(message: impl Into<String>) -> anyhow::Error {
        Self::of(Category::InvalidModel, message.into()).into()
    }

    /// A model tfe-run cannot run, said in a sentence of its own.
    pub fn unsupported(message: impl Into<String>) -> anyhow::Error {
        Self::of(Category::Unsupported, message.into()).into()
    }

    /// The argument `what` is wrong: a flag and its value (`--timeout 0`), the
    /// INPUT, or the files that do not go together.
    pub fn bad_arg(what: impl Into<String>, reason: impl Into<String>) -> anyhow::Error {
        Error::BadInput { what: Some(what.into()), reason: reason.into() }.into()
    }

    /// The input file `file` is wrong.
    pub fn bad_file(file: &Path, reason: impl Into<String>) -> anyhow::Error {
        Error::BadInput { what: Some(format!("`{}`", file.display())), reason: reason.into() }.into()
    }

    /// Node `node` of op `op` cannot run: "Conv2D `conv1/Conv2D`: reason".
    pub fn at_node(node: impl Into<String>, op: impl Into<String>, reason: impl Into<String>) -> anyhow::Error {
        Error::Unsupported { node: Some(node.into()), op: Some(op.into()), reason: reason.into() }.into()
    }

    /// Node `node` of op `op` is malformed in the model file.
    pub fn invalid_node(node: impl Into<String>, op: impl Into<String>, reason: impl Into<String>) -> anyhow::Error {
        Error::InvalidModel { file: None, node: Some(node.into()), op: Some(op.into()), reason: reason.into() }.into()
    }

    /// The model file `file` cannot be read as a graph.
    pub fn invalid_file(file: &Path, reason: impl Into<String>) -> anyhow::Error {
        Error::InvalidModel { file: Some(file.to_path_buf()), node: None, op: None, reason: reason.into() }.into()
    }

    /// The operands of node `node` (op `op`) have shapes that do not check.
    pub fn shape(
        node: impl Into<String>,
        op: impl Into<String>,
        shapes: Vec<Vec<usize>>,
        reason: impl Into<String>,
    ) -> anyhow::Error {
        Error::Shape { node: node.into(), op: op.into(), shapes, reason: reason.into() }.into()
    }

    /// Party `party` (its name: `server1`, `crypto-producer`) refused, failed,
    /// timed out or could not be reached.
    pub fn party(party: impl Into<String>, reason: impl Into<String>) -> anyhow::Error {
        Error::Party { party: party.into(), reason: reason.into() }.into()
    }

    /// Writing the output failed (`e` says which file, and why).
    pub fn output(e: anyhow::Error) -> anyhow::Error {
        Error::Output(e).into()
    }

    /// The error the old constructors made: a category and a sentence.
    fn of(category: Category, reason: String) -> Error {
        match category {
            Category::BadInput => Error::BadInput { what: None, reason },
            Category::InvalidModel => Error::InvalidModel { file: None, node: None, op: None, reason },
            Category::Unsupported => Error::Unsupported { node: None, op: None, reason },
        }
    }
}

/// The exit code of a failed command: that of the first [`Error`] in the chain
/// (a value out of the ring's range is a bad input; a closed stdout is no
/// failure), else a party's failure for the commands that drive remote parties
/// (`remote`) and an unexpected one for the others.
pub fn exit_code_of(err: &anyhow::Error, remote: bool) -> u8 {
    err.chain()
        .find_map(|cause| match cause.downcast_ref::<Error>() {
            Some(e) => Some(e.exit_code()),
            None => cause.is::<crate::ring::OutOfRange>().then_some(exit::BAD_INPUT),
        })
        .unwrap_or(if remote { exit::PARTY } else { exit::FAILURE })
}

/// Did the command fail only because the reader of its stdout went away?
pub fn is_closed_stdout(err: &anyhow::Error) -> bool {
    err.chain().filter_map(|c| c.downcast_ref::<Error>()).any(Error::is_closed_stdout)
}

/// The category of the first categorised error in the chain, if any.
pub fn category_of(err: &anyhow::Error) -> Option<Category> {
    err.chain().find_map(|cause| match cause.downcast_ref::<Error>() {
        Some(e) => e.category(),
        None => cause.is::<crate::ring::OutOfRange>().then_some(Category::BadInput),
    })
}

/// "a: b: reason", leaving out the parts that are not known.
fn prefixed(parts: &[Option<&str>], reason: &str) -> String {
    let mut text = String::new();
    for part in parts.iter().flatten() {
        text.push_str(part);
        text.push_str(": ");
    }
    text.push_str(reason);
    text
}

fn model_file(file: &Path) -> String {
    format!("model `{}`", file.display())
}

/// A node as the messages name it: "Conv2D `conv1/Conv2D`" (as `describe`).
fn place(op: &Option<String>, node: &Option<String>) -> Option<String> {
    match (op, node) {
        (Some(op), Some(node)) => Some(format!("{op} `{node}`")),
        (None, Some(node)) => Some(format!("node `{node}`")),
        (Some(op), None) => Some(op.clone()),
        (None, None) => None,
    }
}

fn shape_text(op: &str, node: &str, shapes: &[Vec<usize>], reason: &str) -> String {
    let text = format!("{op} `{node}`: {reason}");
    if shapes.is_empty() {
        return text;
    }
    let shapes: Vec<String> = shapes.iter().map(|s| format!("{s:?}")).collect();
    format!("{text} (shapes {})", shapes.join(", "))
}

fn party_text(party: &str, reason: &str) -> String {
    if reason.contains(party) { reason.to_string() } else { format!("{party}: {reason}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_and_code(e: anyhow::Error) -> (String, u8) {
        (format!("{e:#}"), exit_code_of(&e, false))
    }

    #[test]
    fn each_category_maps_to_its_documented_exit_code() {
        // The README's table: 2 bad input, 3 invalid model, 4 unsupported, 5 a party.
        assert_eq!(Category::BadInput.exit_code(), 2);
        assert_eq!(Category::InvalidModel.exit_code(), 3);
        assert_eq!(Category::Unsupported.exit_code(), 4);
        let cases: [(anyhow::Error, u8); 11] = [
            (Error::bad_input("no MODEL given"), 2),
            (Error::bad_arg("--timeout 0", "must be between 0 and 86400 seconds"), 2),
            (Error::bad_file(Path::new("x.npy"), "not an npy file"), 2),
            (Error::invalid_model("cannot parse"), 3),
            (Error::invalid_file(Path::new("m.pb"), "truncated"), 3),
            (Error::invalid_node("c", "Conv2D", "attribute `strides` is missing"), 3),
            (Error::unsupported("unsupported op Foo"), 4),
            (Error::at_node("c", "Conv2D", "padding `EXPLICIT` is not supported"), 4),
            (Error::shape("c", "Conv2D", vec![vec![1, 28, 28, 3], vec![5, 5, 1, 32]], "channels differ"), 4),
            (Error::party("server1", "refused the session"), 5),
            (crate::ring::FixedPoint::default().check_range(&[f32::NAN], "x").unwrap_err(), 2),
        ];
        for (e, code) in cases {
            let (text, got) = text_and_code(e);
            assert_eq!(got, code, "{text}");
        }
        assert_eq!(exit::PARTY, 5);
        // This process's own output: 1, also in remote mode; a closed stdout: 0.
        let io = |kind| std::io::Error::new(kind, "x");
        let unwritable =
            Error::output(anyhow::Error::new(io(std::io::ErrorKind::NotFound)).context("cannot write `o`"));
        assert_eq!(format!("{unwritable:#}"), "cannot write `o`: x");
        assert_eq!(exit_code_of(&unwritable, true), exit::FAILURE);
        let full = anyhow::Error::new(Error::Stdout(io(std::io::ErrorKind::StorageFull)));
        assert_eq!((exit_code_of(&full, true), is_closed_stdout(&full)), (exit::FAILURE, false));
        let closed = anyhow::Error::new(Error::Stdout(io(std::io::ErrorKind::BrokenPipe)));
        assert_eq!((exit_code_of(&closed, true), is_closed_stdout(&closed)), (exit::OK, true));
        // A peer's broken pipe is not a closed stdout.
        let peer = anyhow::Error::new(io(std::io::ErrorKind::BrokenPipe)).context("sending to server1 failed");
        assert_eq!((exit_code_of(&peer, true), is_closed_stdout(&peer)), (exit::PARTY, false));
    }

    #[test]
    fn an_uncategorised_failure_is_a_partys_in_remote_commands_and_unexpected_otherwise() {
        let e = anyhow::anyhow!("connection reset");
        assert_eq!(exit_code_of(&e, true), exit::PARTY);
        assert_eq!(exit_code_of(&e, false), exit::FAILURE);
        // A structured error decides, whether remote or not, also under context.
        let e = Error::bad_input("no input given").context("predict");
        assert_eq!(exit_code_of(&e, true), exit::BAD_INPUT);
        let e = Error::party("server0", "server0 has sent nothing for 10s").context("predict");
        assert_eq!(exit_code_of(&e, false), exit::PARTY);
        // A party's failure has no category: what a client tells the others
        // about it stays "an error".
        assert_eq!(category_of(&e), None);
        assert_eq!(category_of(&Error::shape("n", "Add", vec![], "r")), Some(Category::Unsupported));
    }

    #[test]
    fn a_variants_text_names_its_node_op_file_and_party() {
        let text = |e: anyhow::Error| e.to_string();
        assert_eq!(
            text(Error::at_node("conv1/Conv2D", "Conv2D", "data_format NCHW is not supported (only NHWC)")),
            "Conv2D `conv1/Conv2D`: data_format NCHW is not supported (only NHWC)"
        );
        assert_eq!(
            text(Error::shape(
                "conv1/Conv2D",
                "Conv2D",
                vec![vec![1, 28, 28, 3], vec![5, 5, 1, 32]],
                "input has 3 channels, filter expects 1"
            )),
            "Conv2D `conv1/Conv2D`: input has 3 channels, filter expects 1 (shapes [1, 28, 28, 3], [5, 5, 1, 32])"
        );
        assert_eq!(
            text(Error::invalid_node("dense/MatMul", "MatMul", "attribute `transpose_a` is not a bool")),
            "MatMul `dense/MatMul`: attribute `transpose_a` is not a bool"
        );
        assert_eq!(text(Error::invalid_file(Path::new("m.pb"), "not a GraphDef")), "model `m.pb`: not a GraphDef");
        let e =
            Error::InvalidModel { file: Some("m.pb".into()), node: Some("x".into()), op: None, reason: "no op".into() };
        assert_eq!(e.to_string(), "model `m.pb`: node `x`: no op");
        assert_eq!(text(Error::bad_arg("--batch-size 0", "must be at least 1")), "--batch-size 0: must be at least 1");
        assert_eq!(text(Error::bad_file(Path::new("in.npy"), "not an npy file")), "`in.npy`: not an npy file");
        // A party's reason that names it is kept as it is; one that does not
        // is prefixed with its name.
        assert_eq!(
            text(Error::party("server1", "server1 refused the session: busy")),
            "server1 refused the session: busy"
        );
        assert_eq!(
            text(Error::party("crypto-producer", "closed the connection")),
            "crypto-producer: closed the connection"
        );
        // The old constructors keep their sentences as they are.
        assert_eq!(text(Error::unsupported("unsupported op Foo")), "unsupported op Foo");
        assert_eq!(text(Error::bad_input("no MODEL given")), "no MODEL given");
        assert_eq!(text(Error::invalid_model("cannot parse")), "cannot parse");
    }

    #[test]
    fn the_fields_are_there_to_read() {
        let e = Error::shape("n", "MatMul", vec![vec![2, 3], vec![4, 5]], "inner dimensions differ");
        match e.downcast_ref::<Error>() {
            Some(Error::Shape { node, op, shapes, .. }) => {
                assert_eq!((node.as_str(), op.as_str(), shapes.len()), ("n", "MatMul", 2));
            }
            other => panic!("not a shape error: {other:?}"),
        }
    }
}
