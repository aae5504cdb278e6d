//! The command line: parse, validate, run, print.

mod args;
mod inspect;
mod output;

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;
use clap::Parser;

pub use args::{Cli, Command, Format, Mode, RunConfig};

use crate::error::{Error, exit};
use crate::import::{self, Feed, Graph};
use crate::{npy, plaintext};

/// Run the command line and return the process exit code.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::BAD_INPUT
            } else {
                exit::OK
            };
        }
    };
    let result = match cli.command {
        Some(Command::Inspect(args)) => inspect::run(&args),
        None => cli.run.validate().and_then(|config| run(&config)),
    };
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => exit::OK,
        Err(err) => {
            eprintln!("error: {err:#}");
            crate::error::category_of(&err).map_or(exit::FAILURE, |c| c.exit_code())
        }
    }
}

/// A reader that stopped reading (`tfe-run ... | head`) is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Which file feeds which placeholder.
fn assign_inputs(
    graph: &Graph,
    output: usize,
    config: &RunConfig,
) -> Result<BTreeMap<String, std::path::PathBuf>> {
    let mut feeds = config.feeds.clone();
    if let Some(input) = &config.input {
        let used = graph.data_ancestors(output);
        let placeholders = import::placeholders(graph, &used)?;
        let open: Vec<&str> = placeholders
            .iter()
            .map(|p| p.name.as_str())
            .filter(|n| !feeds.contains_key(*n))
            .collect();
        match open.as_slice() {
            [one] => {
                feeds.insert(one.to_string(), input.clone());
            }
            [] => {
                return Err(Error::bad_input(format!(
                    "INPUT `{}` is given, but every placeholder is already fed with --input",
                    input.display()
                )));
            }
            many => {
                return Err(Error::bad_input(format!(
                    "the model has {} placeholders without an input ({}); feed all but one with --input NAME=FILE.npy",
                    many.len(),
                    many.iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    }
    Ok(feeds)
}

/// A prediction: import, plan, execute, print.
pub fn run(config: &RunConfig) -> Result<u8> {
    let graph = Graph::load(&config.model)?;
    let output = graph.output(config.output_node.as_deref())?;
    import::check_supported(&graph, &graph.data_ancestors(output))
        .map_err(|e| e.context(format!("model `{}`", config.model.display())))?;
    let files = assign_inputs(&graph, output, config)?;
    let mut inputs = BTreeMap::new();
    let mut feeds = BTreeMap::new();
    for (name, path) in &files {
        let array = npy::read_input(path)?;
        feeds.insert(
            name.clone(),
            Feed {
                shape: array.shape().to_vec(),
                source: path.display().to_string(),
            },
        );
        inputs.insert(name.clone(), array);
    }
    let plan = import::build_plan(&graph, output, &feeds)
        .map_err(|e| e.context(format!("model `{}`", config.model.display())))?;
    match config.mode {
        Mode::Plaintext => {}
    }
    let result = plaintext::run(&plan, &inputs)?;
    if let Some(path) = &config.out {
        npy::write_f32(path, &result.to_float())?;
    }
    let text = match config.format {
        Format::Text => output::text(&plan.output_node, config.mode, &result),
        Format::Json => output::json(&config.model, &plan.output_node, config.mode, &result),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(exit::OK)
}
