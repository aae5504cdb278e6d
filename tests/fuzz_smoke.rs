//! A smoke run of the fuzz targets inside `cargo test`: each target's code
//! (`tfe_run::fuzzing`) over its seed files and a few thousand deterministic
//! mutations of them (flipped, inserted and deleted bytes, truncations). The
//! coverage-guided runs are in `tests/fuzz/` (see docs/TESTING.md, Hostile input and fuzzing).

mod common;

use std::path::PathBuf;

use common::{have_reference, reference, testdata};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

fn mutate(seed: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.next_u32() % 8 {
        let at = if bytes.is_empty() { 0 } else { rng.next_u32() as usize % bytes.len() };
        match rng.next_u32() % 5 {
            0 if !bytes.is_empty() => bytes[at] ^= 1 << (rng.next_u32() % 8),
            1 if !bytes.is_empty() => bytes[at] = rng.next_u32() as u8,
            2 => bytes.insert(at, rng.next_u32() as u8),
            3 if !bytes.is_empty() => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

fn smoke(target: fn(&[u8]), seeds: &[Vec<u8>], mutations: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(0x7fe);
    for seed in seeds {
        target(seed);
    }
    for i in 0..mutations {
        let seed = &seeds[i % seeds.len()];
        target(&mutate(seed, &mut rng));
    }
}

fn files(paths: &[PathBuf]) -> Vec<Vec<u8>> {
    paths.iter().map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).collect()
}

#[test]
fn graphdef_target_survives_real_models_and_their_mutations() {
    let mut paths = vec![testdata("mnist_model.pb"), testdata("ops/activations.pb"), testdata("ops/argmax.pb")];
    if have_reference("graphdef_target_survives_real_models_and_their_mutations (tf-encrypted's seeds)") {
        paths.extend([reference("2inputs.pb"), reference("2lfc.pb")]);
    }
    let seeds = files(&paths);
    smoke(tfe_run::fuzzing::graphdef, &seeds, 2000);
}

#[test]
fn onnx_target_survives_real_models_and_their_mutations() {
    let seeds = files(&[testdata("onnx/mnist_cnn.onnx"), testdata("onnx/tf2onnx_mlp.onnx")]);
    smoke(tfe_run::fuzzing::onnx, &seeds, 2000);
}

#[test]
fn npy_target_survives_real_inputs_and_their_mutations() {
    let mut paths = vec![testdata("mnist_input.npy")];
    if have_reference("npy_target_survives_real_inputs_and_their_mutations (tf-encrypted's seed)") {
        paths.push(reference("2lfc_input_example.npy"));
    }
    let seeds = files(&paths);
    smoke(tfe_run::fuzzing::npy, &seeds, 5000);
}

#[test]
fn wire_target_survives_real_hellos_and_their_mutations() {
    use tfe_run::remote::{Control, Deployment, Request};
    use tfe_run::train::{DatasetInfo, TrainSpec};
    use tfe_run::transport::Party;
    use tfe_run::transport::wire::Frame;

    // Real control messages, as drivers and servers send them: a hello for every
    // request kind (the public plan of the shipped model; training specs like
    // tests/train.rs's), and every answer a driver reads.
    let p = tfe_run::cli::prepare(
        &testdata("mnist_model.pb"),
        None,
        Some(&testdata("mnist_input.npy")),
        &Default::default(),
    )
    .unwrap();
    let program = Box::new(tfe_run::runtime::lower(&p.plan, Default::default()).unwrap());
    let digest = program.digest();
    let deployment = Deployment { id: 7, digest: digest.clone() };
    let spec = TrainSpec {
        owners: vec![300, 269],
        features: 30,
        outputs: 1,
        epochs: 3,
        batch_size: 32,
        learning_rate: 0.5,
        feature_bound: 8.0,
        shuffle: Some([5; 32]),
        frac_bits: 16,
        held: vec!["clinic".into()],
        comparison: Default::default(),
    };
    let multi_class =
        TrainSpec { owners: vec![100], features: 64, outputs: 10, shuffle: None, held: vec![], ..spec.clone() };
    let info = DatasetInfo { rows: 300, features: 30, outputs: 1, frac_bits: 16, feature_bound: 8.0 };
    let requests = [
        Request::Predict { program: program.clone(), predictions: 1, digest: digest.clone() },
        Request::Deploy { name: "mnist".into(), program: program.clone(), replace: true, digest },
        Request::PredictDeployed { name: "mnist".into(), predictions: 2, deployment: deployment.clone() },
        Request::Describe { name: "mnist".into() },
        Request::Train { spec },
        Request::Train { spec: multi_class },
        Request::Contribute { name: "clinic".into(), info, trainers: vec!["model-owner".into()], replace: false },
        Request::DescribeData { name: "clinic".into() },
        Request::Status,
    ];
    let version = tfe_run::remote::Version::current;
    let hello = |request| Control::Hello {
        version: version(),
        from: Party::Client,
        session: 7,
        request: Some(Box::new(request)),
    };
    let mut controls: Vec<Vec<u8>> = requests.into_iter().map(|r| hello(r).encode()).collect();
    controls.extend([
        Control::Hello { version: version(), from: Party::Server0, session: 7, request: None }.encode(),
        Control::Ready {
            version: version(),
            deployed: Some(program),
            deployment: Some(deployment.clone()),
            dataset: None,
            status: None,
        }
        .encode(),
        Control::Ready { version: version(), deployed: None, deployment: None, dataset: Some(info), status: None }
            .encode(),
        // A server's answer to `tfe-run status`.
        Control::Ready {
            version: version(),
            deployed: None,
            deployment: None,
            dataset: None,
            status: Some(Box::new(tfe_run::remote::PartyStatus {
                party: Party::Server1,
                version: version(),
                commit: "abc1234".into(),
                draining: false,
                sessions: 2,
                tls: true,
                limits: tfe_run::remote::StatusLimits {
                    max_sessions: 64,
                    max_handshakes: 128,
                    max_memory: 8 << 30,
                    max_session_buffer: 4 << 30,
                    timeout: 10.0,
                    handshake_timeout: 5.0,
                    join_timeout: 60.0,
                },
                models: vec![tfe_run::remote::HeldModel { name: "mnist".into(), deployment: deployment.clone() }],
                datasets: vec![tfe_run::remote::HeldDataset { name: "clinic".into(), rows: 300, features: 30 }],
            })),
        }
        .encode(),
        Control::Refused { reason: "no model named `mnist` is deployed here".into(), stale: false }.encode(),
        Control::Prepared { deployment: deployment.clone() }.encode(),
        Control::Commit { deployment }.encode(),
        // A server's report (its type is the crate's own): as server0 sends it.
        br#"{"Done":{"report":{"stats":{"traffic":{"bytes_sent":4096,"bytes_received":2048,"messages_sent":12,
            "rounds":6},"per_layer":{"3":{"bytes_sent":96,"bytes_received":96,"messages_sent":2,"rounds":1}},
            "busy":{"secs":1,"nanos":500},"expanded_words":77},"layer_time":{"3":{"secs":0,"nanos":9000}},
            "setup":{"secs":0,"nanos":100}}}}"#
            .to_vec(),
    ]);
    for json in &controls {
        Control::decode(json, "a seed").unwrap_or_else(|e| panic!("{e:#}: {}", String::from_utf8_lossy(json)));
    }
    let mut seeds: Vec<Vec<u8>> = controls.into_iter().map(|json| Frame::Control(json).encode()).collect();
    seeds.push(
        Frame::Message {
            key: tfe_run::transport::MsgKey { session: 7, seq: 1, step: 2, tag: 3 },
            payload: vec![1; 40],
        }
        .encode(),
    );
    smoke(tfe_run::fuzzing::wire, &seeds, 3000 + 300 * seeds.len());
}

#[test]
fn config_target_survives_configs_and_their_mutations() {
    let seeds = vec![
        br#"{"server0": "localhost:4440", "server1": "localhost:4441", "server2": "localhost:4442"}"#.to_vec(),
        b"[parties]\nserver0 = \"a:1\"\nserver1 = \"b:2\"\ncrypto-producer = \"c:3\"\n[network]\ntimeout_secs = 2\n"
            .to_vec(),
    ];
    smoke(tfe_run::fuzzing::config, &seeds, 5000);
}

#[test]
fn a_server_report_of_too_many_expanded_words_saturates_the_dealer_bytes_not_wraps() {
    // The driver counts the dealer's bytes from the servers' reports, which come
    // from the network: 2^61 words (2^64 bytes) wrapped to none at all.
    let server = |expanded_words| tfe_run::runtime::PartyStats { expanded_words, ..Default::default() };
    let stats = tfe_run::runtime::Stats {
        parties: [
            (tfe_run::transport::Party::Server0, server(1 << 61)),
            (tfe_run::transport::Party::Server1, server(3)),
        ]
        .into(),
        ..Default::default()
    };
    assert_eq!(stats.dealer_bytes(), (u64::MAX, 0));
}

/// The SavedModel index reader (a hand-written reader of LevelDB's table format,
/// `src/frontend/savedmodel/table.rs`) over the index files of every testdata
/// SavedModel and their mutations; then whole SavedModel directories whose index
/// is mutated, loaded with their real data shards beside it: each load must
/// return (a model, or an error), never panic.
#[test]
fn savedmodel_index_target_survives_real_indexes_and_their_mutations() {
    let dirs = ["module_mlp", "keras_cnn", "tf1_mlp"].map(|d| testdata(&format!("savedmodel/{d}")));
    let seeds = files(&dirs.iter().map(|d| d.join("variables/variables.index")).collect::<Vec<_>>());
    smoke(tfe_run::fuzzing::savedmodel_index, &seeds, 3000);

    let mut rng = ChaCha8Rng::seed_from_u64(0x5a7ed);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("module_mlp");
    std::fs::create_dir_all(dir.join("variables")).unwrap();
    for f in ["saved_model.pb", "variables/variables.data-00000-of-00001"] {
        std::fs::copy(dirs[0].join(f), dir.join(f)).unwrap();
    }
    let index = dir.join("variables/variables.index");
    let mut loaded = 0;
    for _ in 0..100 {
        std::fs::write(&index, mutate(&seeds[0], &mut rng)).unwrap();
        if let Ok(model) = tfe_run::frontend::load_choice(&dir, Default::default(), &Default::default(), |_| {
            Err(anyhow::anyhow!("no feeds: only the loading is fuzzed"))
        }) {
            let _ = model.report;
            loaded += 1;
        }
    }
    // Most mutations are caught by a checksum; some (in the footer's padding,
    // say) leave a loadable model. Either way nothing panicked.
    assert!(loaded < 100, "no mutation was refused: the checks did not run");
}
