//! The remote commands: `serve`, `certs`, `deploy` and `predict`.

use std::collections::BTreeMap;

use anyhow::Result;

use super::args::{CertsArgs, DeployArgs, PredictArgs, ServeArgs};
use super::{Mode, print_result, stats};
use crate::cluster::{self, Cluster};
use crate::error::{Error, exit};
use crate::frontend::{self, Feed, Placeholder};
use crate::npy::Input;
use crate::remote::serve::{ServeOptions, serve as serve_party};
use crate::remote::{Security, driver};
use crate::ring::FixedPoint;
use crate::transport::network::Limits;
use crate::transport::tls;

pub fn serve(args: &ServeArgs) -> Result<u8> {
    let config = args.net.config.as_ref().ok_or_else(|| Error::bad_input("`tfe-run serve` needs --config FILE"))?;
    if args.net.principal.is_some() {
        return Err(Error::bad_input("--as is for the commands that drive a cluster, not for `serve`"));
    }
    crate::remote::log::init(args.log_format);
    let cluster = Cluster::load(config)?;
    let party = cluster::serving_party(&args.party)?;
    let security = Security::choose(args.net.certs.as_deref(), cluster.certs.as_deref(), args.net.insecure)?;
    let timeout = args.net.timeout()?.or(cluster.timeout).unwrap_or(cluster::DEFAULT_TIMEOUT);
    let tls = matches!(security, Security::Tls(_));
    let options = ServeOptions {
        party,
        listen: args.listen.clone(),
        timeout,
        security,
        max_memory: args.max_memory,
        max_sessions: args.max_sessions as usize,
        max_handshakes: args.max_handshakes as usize,
        handshake_timeout: seconds(args.handshake_timeout, "--handshake-timeout")?,
        limits: Limits {
            max_buffer: args.max_session_buffer,
            join_timeout: seconds(args.join_timeout, "--join-timeout")?,
        },
        metrics: args.metrics.clone(),
        drain_timeout: seconds(args.drain_timeout, "--drain-timeout")?,
    };
    serve_party(cluster, options, |addr| {
        // Scripts and tests wait for this line.
        tracing::info!("listening on {addr} ({})", if tls { "mutual TLS" } else { "INSECURE: no TLS" });
    })?;
    Ok(exit::OK)
}

/// A duration flag in seconds: over 0, at most a day.
fn seconds(t: f64, flag: &str) -> Result<std::time::Duration> {
    if t.is_finite() && t > 0.0 && t <= 86_400.0 {
        Ok(std::time::Duration::from_secs_f64(t))
    } else {
        Err(Error::bad_arg(format!("{flag} {t}"), "must be between 0 and 86400 seconds"))
    }
}

pub fn certs(args: &CertsArgs) -> Result<u8> {
    // Read the config so that a typo in it is found now, not at `serve`.
    Cluster::load(&args.config)?;
    let principals: Vec<(crate::transport::Party, String)> = (args.clients.iter())
        .map(|n| (crate::transport::Party::Client, n.clone()))
        .chain(args.model_owners.iter().map(|n| (crate::transport::Party::ModelOwner, n.clone())))
        .collect();
    let written = tls::generate_with(&args.out, &principals, args.force)?;
    super::ui::info(format_args!(
        "wrote {} to `{}`: give each host ca.pem and only its own NAME.pem and NAME.key",
        written.join(", "),
        args.out.display()
    ));
    Ok(exit::OK)
}

pub fn deploy(args: &DeployArgs) -> Result<u8> {
    let deployed = deploy_source(args, &frontend::Source::Path(args.model.clone()))?;
    super::ui::info(deployed);
    Ok(exit::OK)
}

/// `deploy` of `model` (the file `args.model` names, or a model's bytes): the
/// weights secret-shared to the servers under `args.name`. Returns the line
/// `deploy` prints.
pub fn deploy_source(args: &DeployArgs, model: &frontend::Source) -> Result<String> {
    let remote = args.net.required("deploy")?;
    let fp = FixedPoint::new(args.frac_bits)?;
    let loaded = frontend::load_source(model, args.choice(), &frontend::Public::new(), |report| {
        report.placeholders.iter().map(|p| deploy_feed(p, args.batch_size)).collect()
    })?;
    // The deployed program is one signature's output: predictions run it as it is.
    let chosen = (loaded.saved_model.as_ref())
        .map(|sm| format!(" (signature `{}`, output `{}`)", sm.signature, sm.output))
        .unwrap_or_default();
    let plan = loaded.into_plan()?;
    driver::deploy_with(&remote, &args.name, &plan, fp, args.comparison, args.replace)?;
    let batch = plan.inputs.first().map_or(1, |&id| plan.values[id].shape.first().copied().unwrap_or(1));
    Ok(format!(
        "deployed `{}`{chosen} as `{}`: {} weight tensors secret-shared to server0 and server1, {} row(s) per prediction",
        model.path().display(),
        args.name,
        plan.weights().count(),
        batch
    ))
}

/// What `deploy` feeds a placeholder: its declared shape, the batch (axis 0)
/// `--batch-size` rows where the model leaves it open.
fn deploy_feed(p: &Placeholder, batch_size: Option<usize>) -> Result<(String, Feed)> {
    let dims = p.shape.as_ref().ok_or_else(|| {
        Error::unsupported(format!("placeholder `{}` has an unknown rank: deploy needs its shape", p.name))
    })?;
    let mut shape = Vec::with_capacity(dims.len());
    for (axis, dim) in dims.iter().enumerate() {
        shape.push(match (axis, dim, batch_size) {
            (0, Some(fixed), Some(b)) if *fixed != b => {
                return Err(Error::bad_arg(
                    format!("--batch-size {b}"),
                    format!("placeholder `{}` has a fixed batch of {fixed}", p.name),
                ));
            }
            (_, Some(fixed), _) => *fixed,
            (0, None, b) => b.unwrap_or(1),
            (_, None, _) => {
                return Err(Error::unsupported(format!(
                    "placeholder `{}` has an unknown size on axis {axis}: only the batch may be unknown for deploy",
                    p.name
                )));
            }
        });
    }
    if shape.first() == Some(&0) {
        return Err(Error::bad_input("--batch-size must be at least 1"));
    }
    Ok((p.name.clone(), Feed { shape, source: format!("placeholder `{}`", p.name) }))
}

pub fn predict(args: &PredictArgs) -> Result<u8> {
    args.refuse_output_choice()?;
    let remote = driver::Remote { descriptions: args.descriptions(), ..args.net.required("predict")? };
    let mut files = BTreeMap::new();
    for (name, path) in &args.feeds {
        if files.insert(name.clone(), path.clone()).is_some() {
            return Err(Error::bad_input(format!("--input {name}=... is given twice")));
        }
    }
    let files = files.into_iter().map(|(name, path)| (name, Input::File(path))).collect();
    let input = args.input.clone().map(Input::File);
    let (program, output, outcome) = predict_inputs(&remote, &args.name, &files, input.as_ref())?;
    if args.stats {
        eprint!("{}", stats::report(&program, &outcome.stats)?);
    }
    let model = std::path::PathBuf::from(format!("deployed:{}", args.name));
    print_result(&model, &program.plan, Mode::Remote, args.format, args.out.as_deref(), &output)
}

/// `predict` of the model deployed as `name`: `named` feeds placeholders by
/// name, `input` the one placeholder left (which one, only the deployed plan says).
pub fn predict_inputs(
    remote: &driver::Remote,
    name: &str,
    named: &BTreeMap<String, Input>,
    input: Option<&Input>,
) -> Result<(std::sync::Arc<crate::lower::Program>, crate::tensor::Tensor, crate::runtime::Outcome)> {
    let mut inputs = BTreeMap::new();
    for (name, file) in named {
        inputs.insert(name.clone(), file.read()?);
    }
    // Read now (a bad file is the user's to fix before any party is asked) and
    // placed below.
    let positional = input.map(|i| i.read().map(|a| (i, a))).transpose()?;
    if positional.is_none() && inputs.is_empty() {
        return Err(Error::bad_input("no input given: pass INPUT.npy (or --input NAME=FILE.npy)"));
    }
    driver::predict_deployed(remote, name, |plan| {
        let mut all = inputs.clone();
        if let Some((path, array)) = &positional {
            let open: Vec<&str> = plan
                .inputs
                .iter()
                .filter_map(|&id| match &plan.values[id].source {
                    crate::plan::Source::Input { placeholder } if !all.contains_key(placeholder) => {
                        Some(placeholder.as_str())
                    }
                    _ => None,
                })
                .collect();
            match open.as_slice() {
                [one] => {
                    all.insert(one.to_string(), array.clone());
                }
                _ => {
                    return Err(Error::bad_arg(
                        format!("INPUT `{}`", path.name()),
                        format!(
                            "model `{}` has {} placeholders without an input; name them with --input NAME=FILE.npy",
                            name,
                            open.len()
                        ),
                    ));
                }
            }
        }
        Ok(all)
    })
}
