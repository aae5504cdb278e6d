//! `tfe_run._native`: the Python package's bridge to the tfe-run crate.
//!
//! Every function here calls the library API the command line uses (the same
//! loading, planning, running and error types), with the GIL released during
//! the work. Arrays cross as the bytes of a `.npy` file (`numpy.save` into
//! memory, no file), read by the same reader as the CLI's input files: the same
//! checks (dtype, NaN, float32 range) and the same messages. A failure is raised
//! as `NativeError(exit_code, message)`, the code and the `{:#}` message the CLI
//! would print; `tfe_run/__init__.py` turns it into the class of that code.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use tfe_run::cli::{self, DeployArgs, InspectArgs, InspectFormat, Mode, NetworkArgs, RunConfig};
use tfe_run::error::exit;
use tfe_run::frontend::Source;
use tfe_run::npy::Input;

create_exception!(_native, NativeError, PyException, "A tfe-run failure: args are (exit_code, message).");

/// A result of the crate, or the CLI's exit code and message.
type Outcome<T> = Result<T, (u8, String)>;

/// Run `work` without the GIL; an error becomes the CLI's exit code and message,
/// a panic an internal error (exit code 1) instead of a crash of the interpreter.
fn detached<T: Send>(py: Python<'_>, remote: bool, work: impl FnOnce() -> anyhow::Result<T> + Send) -> PyResult<T> {
    let result: Outcome<T> = py.detach(|| match catch_unwind(AssertUnwindSafe(work)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err((tfe_run::error::exit_code_of(&err, remote), format!("{err:#}"))),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            Err((exit::FAILURE, format!("internal error (a bug of tfe-run, please report it): {what}")))
        }
    });
    result.map_err(|(code, message)| NativeError::new_err((code, message)))
}

fn bad_input(message: String) -> PyErr {
    NativeError::new_err((exit::BAD_INPUT, message))
}

/// A model given as a path (str) or as the bytes of a model file.
fn source(model: &Bound<'_, PyAny>) -> PyResult<Source> {
    if let Ok(bytes) = model.cast::<PyBytes>() {
        return Ok(Source::Bytes { name: PathBuf::from("<bytes>"), bytes: bytes.as_bytes().to_vec() });
    }
    match model.extract::<PathBuf>() {
        Ok(path) => Ok(Source::Path(path)),
        Err(_) => Err(bad_input(format!(
            "model: expected a path (str or os.PathLike) or the bytes of a model file, not {}",
            model.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "this type".into())
        ))),
    }
}

/// The `.npy` bytes of arrays by placeholder name, and of the positional input.
fn inputs(named: BTreeMap<String, Vec<u8>>, input: Option<Vec<u8>>) -> (BTreeMap<String, Input>, Option<Input>) {
    let named = named
        .into_iter()
        .map(|(name, bytes)| (name.clone(), Input::Bytes { name: format!("inputs['{name}']"), bytes }));
    (named.collect(), input.map(|bytes| Input::Bytes { name: "x".into(), bytes }))
}

/// A tensor as (shape, float32 little-endian bytes): `numpy.frombuffer` makes the array.
fn tensor(py: Python<'_>, t: &tfe_run::tensor::Tensor) -> (Vec<usize>, Py<PyBytes>) {
    let values = t.to_float();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    (values.shape().to_vec(), PyBytes::new(py, &bytes).unbind())
}

/// How to reach a cluster, a tuple: `--config`, `--certs`, `--insecure`, `--timeout`, `--as`.
#[derive(FromPyObject)]
struct Net(PathBuf, Option<PathBuf>, bool, Option<f64>, Option<String>);

impl Net {
    fn args(self) -> NetworkArgs {
        let Net(config, certs, insecure, timeout, principal) = self;
        NetworkArgs { config: Some(config), certs, insecure, timeout, principal }
    }
}

fn comparison(name: &str) -> PyResult<tfe_run::protocol::Comparison> {
    clap::ValueEnum::from_str(name, false)
        .map_err(|_| bad_input(format!("comparison {name:?}: expected \"bitwise\" or \"fss\"")))
}

/// `tfe-run inspect --format json MODEL`: (the JSON text, the exit code, why no plan).
#[pyfunction]
#[pyo3(signature = (model, output_node=None, signature=None, output_key=None))]
fn inspect(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    output_node: Option<String>,
    signature: Option<String>,
    output_key: Option<String>,
) -> PyResult<(String, u8, Option<String>)> {
    let model = source(model)?;
    let args = InspectArgs {
        model: model.path().to_path_buf(),
        signature,
        output_key,
        output_node,
        plan: false,
        public: Vec::new(),
        format: InspectFormat::Json,
    };
    let inspection = detached(py, false, || cli::inspect::report(&args, &model))?;
    Ok((inspection.text, inspection.verdict, inspection.error))
}

/// Shape, bytes and the stats (JSON text, when asked) of a prediction.
type Predicted = (Vec<usize>, Py<PyBytes>, Option<String>);

/// `tfe-run MODEL INPUT` (with `--plaintext`, `--frac-bits`, `--input`, ...).
#[pyfunction]
#[pyo3(signature = (model, named, input, plaintext, frac_bits, comparison_name, output_node, signature, output_key, stats, max_memory, public))]
#[allow(clippy::too_many_arguments)]
fn predict(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    named: BTreeMap<String, Vec<u8>>,
    input: Option<Vec<u8>>,
    plaintext: bool,
    frac_bits: u32,
    comparison_name: &str,
    output_node: Option<String>,
    signature: Option<String>,
    output_key: Option<String>,
    stats: bool,
    max_memory: u64,
    public: BTreeMap<String, f32>,
) -> PyResult<Predicted> {
    let model = source(model)?;
    let (feeds, input) = inputs(named, input);
    let comparison = comparison(comparison_name)?;
    let prediction = detached(py, false, || {
        let config = RunConfig {
            model,
            input,
            feeds,
            public,
            mode: if plaintext { Mode::Plaintext } else { Mode::Secure },
            fixed_point: tfe_run::ring::FixedPoint::new(frac_bits)?,
            comparison,
            stats,
            output_node,
            signature,
            output_key,
            format: cli::Format::Text,
            out: None,
            remote: None,
            max_memory,
        };
        cli::predict(&config)
    })?;
    let stats = match (&prediction.secure, stats) {
        (Some((program, measured)), true) => Some(cli::stats::json(program, measured).to_string()),
        _ => None,
    };
    let (shape, bytes) = tensor(py, &prediction.output);
    Ok((shape, bytes, stats))
}

/// `tfe-run deploy MODEL --name NAME ...`: the line it prints.
#[pyfunction]
#[pyo3(signature = (net, model, name, batch_size, frac_bits, comparison_name, replace, output_node, signature, output_key))]
#[allow(clippy::too_many_arguments)]
fn deploy(
    py: Python<'_>,
    net: Net,
    model: &Bound<'_, PyAny>,
    name: String,
    batch_size: Option<usize>,
    frac_bits: u32,
    comparison_name: &str,
    replace: bool,
    output_node: Option<String>,
    signature: Option<String>,
    output_key: Option<String>,
) -> PyResult<String> {
    let model = source(model)?;
    let args = DeployArgs {
        model: model.path().to_path_buf(),
        net: net.args(),
        name,
        batch_size,
        signature,
        output_key,
        output_node,
        frac_bits,
        comparison: comparison(comparison_name)?,
        replace,
    };
    detached(py, true, || cli::remote::deploy_source(&args, &model))
}

/// `tfe-run predict --model NAME INPUT`, keeping descriptions of deployments
/// (`--cache-dir`) unless `cache` is false (`--no-cache`).
#[pyfunction]
#[pyo3(signature = (net, name, named, input, stats, cache, cache_dir))]
#[allow(clippy::too_many_arguments)]
fn predict_deployed(
    py: Python<'_>,
    net: Net,
    name: String,
    named: BTreeMap<String, Vec<u8>>,
    input: Option<Vec<u8>>,
    stats: bool,
    cache: bool,
    cache_dir: Option<PathBuf>,
) -> PyResult<Predicted> {
    let (feeds, input) = inputs(named, input);
    let net = net.args();
    let descriptions = if cache { tfe_run::remote::descriptions::Descriptions::chosen(cache_dir) } else { None };
    let (program, output, outcome) = detached(py, true, || {
        let remote = tfe_run::remote::driver::Remote { descriptions, ..net.required("predict")? };
        cli::remote::predict_inputs(&remote, &name, &feeds, input.as_ref())
    })?;
    let stats = stats.then(|| cli::stats::json(&program, &outcome.stats).to_string());
    let (shape, bytes) = tensor(py, &output);
    Ok((shape, bytes, stats))
}

/// `tfe-run status --format json`: (the JSON text, the exit code).
#[pyfunction]
fn status(py: Python<'_>, net: Net) -> PyResult<(String, u8)> {
    let net = net.args();
    detached(py, true, || {
        let remote = net.required("status")?;
        let answers = tfe_run::remote::driver::status(&remote)?;
        let code = if answers.iter().all(|(_, a)| a.is_ok()) { exit::OK } else { exit::PARTY };
        Ok((cli::status::json(&answers), code))
    })
}

/// What `train` gives the model owner: the GraphDef's bytes, the weights
/// ([features, outputs]) and bias ([outputs]) as (shape, bytes), each epoch's
/// loss, the accuracy on the held-out rows, and the summary the CLI prints
/// (minus its `wrote` line), and the stats (JSON text) when asked.
type TrainedModel = (Py<PyBytes>, (Vec<usize>, Py<PyBytes>), (Vec<usize>, Py<PyBytes>), Vec<f64>, Option<f64>);

/// `tfe-run train --features X.npy --labels y.npy ...`.
#[pyfunction]
#[pyo3(signature = (features, labels, test, epochs, batch_size, learning_rate, shuffle, classes, feature_bound, frac_bits, plaintext, comparison_name, net))]
#[allow(clippy::too_many_arguments)]
fn train(
    py: Python<'_>,
    features: Vec<Vec<u8>>,
    labels: Vec<Vec<u8>>,
    test: Option<(Vec<u8>, Vec<u8>)>,
    epochs: usize,
    batch_size: usize,
    learning_rate: f64,
    shuffle: bool,
    classes: Option<usize>,
    feature_bound: f64,
    frac_bits: u32,
    plaintext: bool,
    comparison_name: &str,
    net: Option<Net>,
) -> PyResult<TrainedModel> {
    use tfe_run::cli::train::{EncodingArgs, TrainArgs, TrainData};
    let named = |what: &str, arrays: Vec<Vec<u8>>| -> Vec<Input> {
        let n = arrays.len();
        (arrays.into_iter().enumerate())
            .map(|(j, bytes)| Input::Bytes { name: if n == 1 { what.into() } else { format!("{what}[{j}]") }, bytes })
            .collect()
    };
    let test = test.map(|(x, y)| {
        (Input::Bytes { name: "test_features".into(), bytes: x }, Input::Bytes { name: "test_labels".into(), bytes: y })
    });
    let data = TrainData { features: named("features", features), labels: named("labels", labels), test };
    let remote = net.is_some();
    let args = TrainArgs {
        features: Vec::new(),
        labels: Vec::new(),
        data: Vec::new(),
        epochs,
        batch_size,
        learning_rate,
        shuffle,
        comparison: comparison(comparison_name)?,
        encoding: EncodingArgs { classes, feature_bound, frac_bits },
        out: PathBuf::new(),
        test_features: None,
        test_labels: None,
        plaintext,
        stats: false,
        net: net.map(Net::args).unwrap_or(NetworkArgs {
            config: None,
            certs: None,
            insecure: false,
            timeout: None,
            principal: None,
        }),
        max_memory: 8 << 30,
    };
    let run = detached(py, remote, || cli::train::train_data(&args, &data))?;
    let model = &run.trained.model;
    let graph = tfe_run::train::export::graph_bytes(model);
    let floats = |shape: Vec<usize>, values: Vec<f32>| {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        (shape, PyBytes::new(py, &bytes).unbind())
    };
    let weights = floats(model.weights.shape().to_vec(), model.weights.iter().map(|&v| v as f32).collect());
    let bias = floats(vec![model.bias.len()], model.bias.iter().map(|&v| v as f32).collect());
    let accuracy = run.test.as_ref().map(|(_, x, y)| model.accuracy(x, y));
    Ok((PyBytes::new(py, &graph).unbind(), weights, bias, run.trained.epoch_losses.clone(), accuracy))
}

/// The release and commit, as `tfe-run --version` prints them.
#[pyfunction]
fn version() -> String {
    tfe_run::cli::VERSION.to_string()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // No progress bars nor information lines from inside a notebook's call;
    // warnings (an unscaled uint8 image) still go to stderr.
    tfe_run::cli::ui::set(true, clap::ColorChoice::Never);
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(predict, m)?)?;
    m.add_function(wrap_pyfunction!(deploy, m)?)?;
    m.add_function(wrap_pyfunction!(predict_deployed, m)?)?;
    m.add_function(wrap_pyfunction!(status, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    Ok(())
}
