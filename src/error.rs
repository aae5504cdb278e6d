//! The error categories a user sees, and the exit codes they map to.
//!
//! Errors travel as `anyhow::Error` so every layer can add context ("while importing
//! model.pb", "node `conv1/Conv2D`"); the root cause is an [`Error`] whose category
//! decides the exit code. `main` prints the whole chain with `{:#}`.

use std::fmt;

/// What kind of failure, as far as the caller of the command line is concerned.
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
    /// The process exit code documented in the README and in `--help`.
    pub fn exit_code(self) -> u8 {
        match self {
            Category::BadInput => exit::BAD_INPUT,
            Category::InvalidModel => exit::INVALID_MODEL,
            Category::Unsupported => exit::UNSUPPORTED,
        }
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

/// A categorised error. Its message must name the file, node or value at fault.
#[derive(Debug)]
pub struct Error {
    pub category: Category,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn bad_input(message: impl Into<String>) -> anyhow::Error {
        Self::categorized(Category::BadInput, message)
    }

    pub fn invalid_model(message: impl Into<String>) -> anyhow::Error {
        Self::categorized(Category::InvalidModel, message)
    }

    pub fn unsupported(message: impl Into<String>) -> anyhow::Error {
        Self::categorized(Category::Unsupported, message)
    }

    fn categorized(category: Category, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Error { category, message: message.into() })
    }
}

/// The category of the first categorised error in the chain, if any.
pub fn category_of(err: &anyhow::Error) -> Option<Category> {
    err.chain().find_map(|cause| match cause.downcast_ref::<Error>() {
        Some(e) => Some(e.category),
        None => cause.is::<crate::ring::OutOfRange>().then_some(Category::BadInput),
    })
}
