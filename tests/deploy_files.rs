//! The deployment files of `docs/deploy/` (docs/DEPLOYMENT.md) against this
//! build, so that they cannot drift from the code: every `tfe-run` command line
//! in them — the Dockerfile's ENTRYPOINT and CMD, the compose file's
//! `command:`, the Kubernetes manifest's `args:` — parses with the CLI's own
//! parser; every config, certificate and data path it names is a file or
//! folder that its container mounts (the certificate folder holding `ca.pem`
//! and the key pair of the command's own role); and the cluster files put each
//! party where the files run it (its compose service, its Kubernetes Service),
//! at the port it listens on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;
use tfe_run::cli::{Cli, Command};
use tfe_run::transport::Party;
use yaml_serde::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deploy")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy_dir().join(name)).unwrap_or_else(|e| panic!("docs/deploy/{name}: {e}"))
}

/// One `tfe-run` command line of a deployment file, with what its container
/// has mounted.
#[derive(Debug, Default)]
struct Line {
    /// Where it is, for messages: `compose.yaml: service server0`.
    origin: String,
    /// The arguments after `tfe-run`.
    args: Vec<String>,
    /// Files the container has at these paths.
    files: BTreeSet<PathBuf>,
    /// Folders mounted whole (data volumes), whose files are not known here.
    folders: BTreeSet<PathBuf>,
}

/// What a command line's parse found: the paths to check and the role whose
/// key pair its `--certs` folder must hold.
struct Parsed {
    config: Option<PathBuf>,
    certs: Option<PathBuf>,
    /// The key pairs (`NAME.pem`, `NAME.key`) the command needs.
    pairs: Vec<String>,
    insecure: bool,
    /// `--listen`'s port, for `serve`.
    listen_port: Option<u16>,
    party: Option<Party>,
}

/// Parse `line` with tfe-run's own parser; a usage error is the error clap
/// prints (it names the misspelt flag). `--help` and `--version` parse.
fn parse(line: &Line) -> Result<Option<Parsed>, String> {
    let argv = std::iter::once("tfe-run").chain(line.args.iter().map(String::as_str));
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            return Ok(None);
        }
        Err(e) => return Err(format!("{}: `tfe-run {}` does not parse: {e}", line.origin, line.args.join(" "))),
    };
    let parsed = match cli.command {
        Some(Command::Serve(serve)) => {
            let party = tfe_run::cluster::serving_party(&serve.party).map_err(|e| format!("{}: {e:#}", line.origin))?;
            let listen_port = match &serve.listen {
                Some(listen) => Some(port_of(listen).ok_or_else(|| format!("{}: --listen {listen}", line.origin))?),
                None => None,
            };
            Parsed {
                config: serve.net.config,
                certs: serve.net.certs,
                pairs: vec![party.name().to_string()],
                insecure: serve.net.insecure,
                listen_port,
                party: Some(party),
            }
        }
        Some(Command::Deploy(deploy)) => Parsed {
            pairs: vec![deploy.net.principal.clone().unwrap_or("model-owner".into())],
            config: deploy.net.config,
            certs: deploy.net.certs,
            insecure: deploy.net.insecure,
            listen_port: None,
            party: None,
        },
        Some(Command::Predict(predict)) => Parsed {
            pairs: vec![predict.net.principal.clone().unwrap_or("client".into())],
            config: predict.net.config,
            certs: predict.net.certs,
            insecure: predict.net.insecure,
            listen_port: None,
            party: None,
        },
        // A prediction with the driver's own model plays both roles.
        None if cli.run.net.config.is_some() => Parsed {
            pairs: vec![cli.run.net.principal.clone().unwrap_or("client".into()), "model-owner".into()],
            config: cli.run.net.config,
            certs: cli.run.net.certs,
            insecure: cli.run.net.insecure,
            listen_port: None,
            party: None,
        },
        _ => {
            return Err(format!("{}: `tfe-run {}` is not a command these files run", line.origin, line.args.join(" ")));
        }
    };
    Ok(Some(parsed))
}

/// The port of `HOST:PORT`.
fn port_of(address: &str) -> Option<u16> {
    address.rsplit_once(':')?.1.parse().ok()
}

/// Check one command line: it parses, runs with TLS, and every path it names
/// is mounted (the certificate folder with `ca.pem` and its role's key pair).
fn check(line: &Line) -> Result<Option<Parsed>, String> {
    let Some(parsed) = parse(line)? else { return Ok(None) };
    let at = &line.origin;
    if parsed.insecure {
        return Err(format!("{at}: a deployment runs with TLS, not --insecure"));
    }
    let config = parsed.config.as_ref().ok_or_else(|| format!("{at}: no --config"))?;
    if !line.files.contains(config) {
        return Err(format!("{at}: --config {} is not a file the container mounts", config.display()));
    }
    let certs = parsed.certs.as_ref().ok_or_else(|| format!("{at}: no --certs"))?;
    let needed = std::iter::once("ca.pem".to_string())
        .chain(parsed.pairs.iter().flat_map(|name| [format!("{name}.pem"), format!("{name}.key")]));
    for file in needed {
        if !line.files.contains(&certs.join(&file)) {
            return Err(format!("{at}: --certs {} has no {file} mounted", certs.display()));
        }
    }
    // Every other absolute path (a model, an input) is mounted too.
    for arg in line.args.iter().filter(|a| a.starts_with('/')) {
        let path = Path::new(arg);
        let mounted = line.files.contains(path) || line.folders.iter().any(|f| path.starts_with(f));
        if !mounted && path != certs {
            return Err(format!("{at}: {arg} is not in anything the container mounts"));
        }
    }
    Ok(Some(parsed))
}

/// A YAML value's string, or a message naming what was expected.
fn text<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what}: expected a string, found {v:?}"))
}

/// A list of strings (a command line is written as a list: a string would be
/// split by a shell these tests do not have).
fn strings(v: &Value, what: &str) -> Vec<String> {
    let list = v.as_sequence().unwrap_or_else(|| panic!("{what}: write it as a list of strings, found {v:?}"));
    list.iter().map(|s| text(s, what).to_string()).collect()
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key)
}

/// The Dockerfile's final stage: its ENTRYPOINT is `tfe-run`, and its CMD the
/// default command line. Also that it is multi-stage, runs as a non-root user
/// and copies only the binary from the builder.
fn dockerfile_lines(dockerfile: &str) -> Vec<Line> {
    let instructions: Vec<(String, String)> = dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(' ').map(|(i, rest)| (i.to_uppercase(), rest.trim().to_string())))
        .collect();
    let stages: Vec<&(String, String)> = instructions.iter().filter(|(i, _)| i == "FROM").collect();
    assert!(stages.len() >= 2 && stages[0].1.contains(" AS builder"), "a builder stage, then the runtime: {stages:?}");
    let last = instructions.iter().rposition(|(i, _)| i == "FROM").unwrap();
    let runtime = &instructions[last..];
    let exec = |name: &str| -> Vec<String> {
        let (_, json) = runtime.iter().rfind(|(i, _)| i == name).unwrap_or_else(|| panic!("no {name}"));
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{name} {json}: write the exec form: {e}"))
    };
    assert_eq!(exec("ENTRYPOINT"), ["tfe-run"]);
    let user = runtime.iter().rfind(|(i, _)| i == "USER").map(|(_, u)| u.as_str()).expect("a USER");
    assert!(!user.starts_with("root") && !user.starts_with("0"), "USER {user}");
    let copies: Vec<&String> = runtime.iter().filter(|(i, _)| i == "COPY").map(|(_, c)| c).collect();
    assert!(
        copies.len() == 1 && copies[0].starts_with("--from=builder ") && copies[0].ends_with("/tfe-run"),
        "{copies:?}"
    );
    vec![Line { origin: "Dockerfile: CMD".into(), args: exec("CMD"), ..Line::default() }]
}

/// A compose service's command line, with its configs and secrets (files) and
/// volumes (folders) as mounted; `sources` collects which host file each
/// mounted file is.
fn compose_line(name: &str, service: &Value, top: &Value, sources: &mut BTreeMap<PathBuf, PathBuf>) -> Line {
    let origin = format!("compose.yaml: service {name}");
    if let Some(entrypoint) = get(service, "entrypoint") {
        assert_eq!(strings(entrypoint, &origin), ["tfe-run"], "{origin}");
    }
    let command = get(service, "command").unwrap_or_else(|| panic!("{origin}: no command"));
    let mut line = Line { args: strings(command, &origin), origin, ..Line::default() };
    for (kind, entries) in [("configs", get(service, "configs")), ("secrets", get(service, "secrets"))] {
        for entry in entries.and_then(Value::as_sequence).into_iter().flatten() {
            let source = text(get(entry, "source").expect("source"), &line.origin);
            let target = PathBuf::from(text(get(entry, "target").expect("target"), &line.origin));
            let file = get(top, kind)
                .and_then(|t| get(t, source))
                .and_then(|s| get(s, "file"))
                .unwrap_or_else(|| panic!("{}: {kind} `{source}` is not defined with a file", line.origin));
            let file = deploy_dir().join(text(file, source));
            // The mounted file is the one of its name: ca.pem is ca.pem.
            assert_eq!(file.file_name(), target.file_name(), "{}: {kind} `{source}`", line.origin);
            sources.insert(target.clone(), file);
            line.files.insert(target);
        }
    }
    for volume in get(service, "volumes").map(|v| strings(v, "volumes")).unwrap_or_default() {
        let target = volume.split(':').nth(1).unwrap_or_else(|| panic!("{}: volume {volume}", line.origin));
        line.folders.insert(PathBuf::from(target));
    }
    line
}

#[derive(Deserialize)]
struct Port {
    name: Option<String>,
    #[serde(rename = "containerPort")]
    container_port: Option<u16>,
    port: Option<u16>,
    #[serde(rename = "targetPort")]
    target_port: Option<Value>,
}

fn ports(v: Option<&Value>) -> Vec<Port> {
    v.map(|p| yaml_serde::from_value(p.clone()).expect("ports")).unwrap_or_default()
}

/// What each volume of a pod is: the files it holds, if known.
fn volume_files(spec: &Value, config_maps: &BTreeMap<String, Value>) -> BTreeMap<String, Option<BTreeSet<String>>> {
    let mut volumes = BTreeMap::new();
    for volume in spec.get("volumes").and_then(Value::as_sequence).into_iter().flatten() {
        let name = text(volume.get("name").unwrap(), "volume").to_string();
        let files = if let Some(secret) = volume.get("secret") {
            // Only the listed items: a Secret's keys are not in the manifest.
            let items = secret.get("items").and_then(Value::as_sequence).expect("a secret volume lists its items");
            Some(items.iter().map(|i| text(i.get("path").unwrap(), "item").to_string()).collect())
        } else if let Some(map) = volume.get("configMap") {
            let map = &config_maps[text(map.get("name").unwrap(), "configMap")];
            Some(
                map.get("data")
                    .and_then(Value::as_mapping)
                    .unwrap()
                    .keys()
                    .map(|k| text(k, "key").to_string())
                    .collect(),
            )
        } else {
            assert!(volume.get("emptyDir").is_some(), "volume {name}");
            None
        };
        volumes.insert(name, files);
    }
    volumes
}

/// The files a container sees through its volume mounts; an emptyDir's are
/// those `filled` says an init container put there.
fn mounted(
    container: &Value,
    volumes: &BTreeMap<String, Option<BTreeSet<String>>>,
    filled: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeSet<PathBuf> {
    let mut files = BTreeSet::new();
    for mount in container.get("volumeMounts").and_then(Value::as_sequence).into_iter().flatten() {
        let name = text(mount.get("name").unwrap(), "mount");
        let at = PathBuf::from(text(mount.get("mountPath").unwrap(), "mountPath"));
        let held = volumes[name].clone().or_else(|| filled.get(name).cloned()).unwrap_or_default();
        match mount.get("subPath").map(|s| text(s, "subPath")) {
            Some(sub) => {
                assert!(held.contains(sub), "volume {name} has no {sub}");
                files.insert(at);
            }
            None => files.extend(held.iter().map(|f| at.join(f))),
        }
    }
    files
}

/// The Kubernetes manifest's Deployments: each container's command line, and
/// per party the namespace, the ConfigMap's cluster file and the Services.
struct Manifest {
    lines: Vec<(Line, String)>,
    /// Namespace → its cluster file's text.
    clusters: BTreeMap<String, String>,
    /// (namespace, Service name) → the Service.
    services: BTreeMap<(String, String), Value>,
    /// Namespace → the Deployment's pod template.
    pods: BTreeMap<String, Value>,
}

fn kubernetes(manifest: &str) -> Manifest {
    let docs: Vec<Value> = yaml_serde::Deserializer::from_str(manifest)
        .map(|d| Value::deserialize(d).expect("a YAML document"))
        .filter(|d| !d.is_null())
        .collect();
    let ns_of = |d: &Value| text(d.get("metadata").and_then(|m| m.get("namespace")).unwrap(), "namespace").to_string();
    let name_of = |d: &Value| text(d.get("metadata").and_then(|m| m.get("name")).unwrap(), "name").to_string();
    let kind_of = |d: &Value| text(d.get("kind").unwrap(), "kind").to_string();
    let mut config_maps: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let mut out =
        Manifest { lines: vec![], clusters: BTreeMap::new(), services: BTreeMap::new(), pods: BTreeMap::new() };
    for doc in &docs {
        match kind_of(doc).as_str() {
            "ConfigMap" => {
                config_maps.entry(ns_of(doc)).or_default().insert(name_of(doc), doc.clone());
            }
            "Service" => {
                out.services.insert((ns_of(doc), name_of(doc)), doc.clone());
            }
            _ => {}
        }
    }
    for doc in docs.iter().filter(|d| kind_of(d) == "Deployment") {
        let ns = ns_of(doc);
        let spec = &doc["spec"];
        assert_eq!(spec["replicas"].as_u64(), Some(1), "{ns}: a party is one process");
        let pod = &spec["template"]["spec"];
        let maps = config_maps.get(&ns).cloned().unwrap_or_default();
        let volumes = volume_files(pod, &maps);
        // What the init containers copy (`install ... SRC... DEST/`) into each emptyDir.
        let mut filled: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for init in pod.get("initContainers").and_then(Value::as_sequence).into_iter().flatten() {
            let command = strings(init.get("command").unwrap(), "initContainers command");
            assert_eq!(command[0], "install", "{ns}: the init container copies files");
            let sources = &command[3..command.len() - 1];
            let dest = PathBuf::from(command.last().unwrap());
            let seen = mounted(init, &volumes, &filled);
            for source in sources {
                assert!(seen.contains(Path::new(source)), "{ns}: the init container has no {source}");
            }
            let mount = init["volumeMounts"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|m| Path::new(text(&m["mountPath"], "")) == dest);
            let volume = text(&mount.unwrap_or_else(|| panic!("{ns}: {} is not mounted", dest.display()))["name"], "");
            let names = sources.iter().map(|s| Path::new(s).file_name().unwrap().to_string_lossy().into_owned());
            filled.entry(volume.to_string()).or_default().extend(names);
        }
        for container in pod["containers"].as_sequence().unwrap() {
            let origin = format!("kubernetes.yaml: {ns}, container {}", text(&container["name"], "name"));
            let mut args = match container.get("command") {
                None => vec![],
                Some(c) => {
                    let c = strings(c, &origin);
                    assert_eq!(c[0], "tfe-run", "{origin}");
                    c[1..].to_vec()
                }
            };
            args.extend(strings(container.get("args").unwrap(), &origin));
            let files = mounted(container, &volumes, &filled);
            out.lines.push((Line { origin, args, files, folders: BTreeSet::new() }, ns.clone()));
        }
        for (name, map) in &maps {
            if let Some(cluster) = map["data"].get("cluster.toml") {
                assert!(out.clusters.insert(ns.clone(), text(cluster, name).to_string()).is_none(), "{ns}: two");
            }
        }
        out.pods.insert(ns, doc["spec"]["template"].clone());
    }
    out
}

/// The misspelt flag the parser must catch, and a path nobody mounted.
#[test]
fn a_misspelt_flag_or_an_unmounted_path_fails_the_check() {
    let files = ["/etc/t/cluster.toml", "/etc/t/certs/ca.pem", "/etc/t/certs/server0.pem", "/etc/t/certs/server0.key"];
    let line = |args: &str| Line {
        origin: "test".into(),
        args: args.split_whitespace().map(String::from).collect(),
        files: files.iter().map(PathBuf::from).collect(),
        folders: BTreeSet::new(),
    };
    let good = "serve --config /etc/t/cluster.toml --party server0 --certs /etc/t/certs --listen 0.0.0.0:4440";
    assert!(check(&line(good)).is_ok(), "{:?}", check(&line(good)).err());
    let misspelt = good.replace("--certs", "--cert");
    let e = check(&line(&misspelt)).err().expect("--cert is not a flag");
    assert!(e.contains("does not parse") && e.contains("--cert"), "{e}");
    let e = check(&line(&good.replace("server0", "server1"))).err().expect("server1's pair is not mounted");
    assert!(e.contains("has no server1.pem mounted"), "{e}");
    let e = check(&line(&good.replace("/etc/t/cluster.toml", "/etc/t/c.toml"))).err().unwrap();
    assert!(e.contains("--config /etc/t/c.toml is not a file the container mounts"), "{e}");
    let e = check(&line(&format!("{good} --insecure"))).err().unwrap();
    assert!(e.contains("--insecure"), "{e}");
    let e = check(&line("predict --config /etc/t/cluster.toml --certs /etc/t/certs --model m /in.npy")).err().unwrap();
    assert!(e.contains("no client.pem mounted"), "{e}");
}

#[test]
fn the_dockerfile_runs_tfe_run_as_a_non_root_user() {
    for line in dockerfile_lines(&read("Dockerfile")) {
        check(&line).unwrap();
    }
    // Its context: the sources the build reads, and not target/ or testdata/.
    let ignore = read("Dockerfile.dockerignore");
    let kept: Vec<&str> = ignore.lines().filter_map(|l| l.strip_prefix('!')).collect();
    assert!(ignore.lines().any(|l| l == "*"), "{ignore}");
    for needed in ["Cargo.toml", "Cargo.lock", "build.rs", "proto/", "src/", "benches/"] {
        assert!(kept.contains(&needed), "the image's build needs {needed}");
    }
}

#[test]
fn every_compose_command_line_parses_and_its_paths_are_mounted() {
    let compose: Value = yaml_serde::from_str(&read("compose.yaml")).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let mut sources = BTreeMap::new();
    let mut served = BTreeMap::new();
    for (name, service) in services {
        let name = text(name, "service");
        let line = compose_line(name, service, &compose, &mut sources);
        let parsed = check(&line).unwrap_or_else(|e| panic!("{e}")).expect("a command");
        if let Some(party) = parsed.party {
            // The metrics port is published for every party.
            let published = strings(&service["ports"], name);
            assert!(published.iter().any(|p| p.ends_with(":9100")), "{name}: metrics port in {published:?}");
            served.insert(party, (name.to_string(), parsed.listen_port.expect("--listen"), parsed.config.unwrap()));
        }
    }
    assert_eq!(served.len(), 3, "server0, server1 and the crypto producer: {served:?}");
    // The cluster file each party reads names every party at its service.
    for (name, port, config) in served.values() {
        let file = &sources[config];
        let cluster = tfe_run::cluster::Cluster::load(file).unwrap();
        for (party, (service, listen, _)) in &served {
            assert_eq!(cluster.address(*party).unwrap(), format!("{service}:{listen}"), "{name}: {}", file.display());
        }
        assert_eq!(*port, 4440);
    }
}

#[test]
fn every_kubernetes_command_line_parses_and_its_paths_are_mounted() {
    let manifest = kubernetes(&read("kubernetes.yaml"));
    let mut served = BTreeMap::new();
    for (line, ns) in &manifest.lines {
        let parsed = check(line).unwrap_or_else(|e| panic!("{e}")).expect("a command");
        let party = parsed.party.expect("every Deployment serves a party");
        assert!(served.insert(party, (ns.clone(), parsed.listen_port.expect("--listen"))).is_none(), "{party:?} twice");
    }
    assert_eq!(served.len(), 3, "one namespace per party: {served:?}");
    let namespaces: BTreeSet<&String> = served.values().map(|(ns, _)| ns).collect();
    assert_eq!(namespaces.len(), 3, "one namespace per party");
    let texts: BTreeSet<&String> = manifest.clusters.values().collect();
    assert_eq!(texts.len(), 1, "every namespace has the same cluster file");
    let cluster = tfe_run::cluster::Cluster::parse(texts.first().unwrap(), Path::new("cluster.toml")).unwrap();
    for (party, (ns, listen)) in &served {
        let address = cluster.address(*party).unwrap();
        // `NAME.NAMESPACE.svc.cluster.local:PORT`: a Service of the party's
        // namespace, whose port leads to the port the party listens on.
        let (host, port) = address.rsplit_once(':').unwrap();
        let (service, rest) = host.split_once('.').unwrap();
        assert_eq!(rest, format!("{ns}.svc.cluster.local"), "{address}");
        let svc = &manifest.services[&(ns.clone(), service.to_string())];
        let pod = &manifest.pods[ns];
        let container = &pod["spec"]["containers"][0];
        let container_ports = ports(container.get("ports"));
        let target = |name: &str| {
            let p = ports(svc["spec"].get("ports")).into_iter().find(|p| p.name.as_deref() == Some(name)).unwrap();
            let by = p.target_port.unwrap();
            let to = container_ports
                .iter()
                .find(|c| by.as_str() == c.name.as_deref() || by.as_u64() == c.container_port.map(u64::from));
            (p.port.unwrap(), to.and_then(|c| c.container_port).unwrap_or_else(|| panic!("{ns}: {name} leads nowhere")))
        };
        let (service_port, container_port) = target("party");
        assert_eq!((port.parse::<u16>().unwrap(), container_port), (service_port, *listen), "{ns}");
        // The Service selects the pod.
        for (k, v) in svc["spec"]["selector"].as_mapping().unwrap() {
            assert_eq!(pod["metadata"]["labels"].get(text(k, "label")), Some(v), "{ns}: selector");
        }
        // The metrics port is declared and serves the readiness probe.
        let (_, metrics) = target("metrics");
        assert_eq!(metrics, 9100, "{ns}");
        let probe = &container["readinessProbe"]["httpGet"];
        assert_eq!(probe["path"].as_str(), Some("/healthz"), "{ns}");
        assert_eq!(probe["port"].as_str(), Some("metrics"), "{ns}");
    }
}
