//! A smoke run of the fuzz targets inside `cargo test`: each target's code
//! (`tfe_run::fuzzing`) over its seed files and a few thousand deterministic
//! mutations of them (flipped, inserted and deleted bytes, truncations). The
//! coverage-guided runs are in `tests/fuzz/` (see README, Fuzzing).

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
    // A real hello as the driver sends it, with the public plan of the shipped model.
    let p = tfe_run::cli::prepare(
        &testdata("mnist_model.pb"),
        None,
        Some(&testdata("mnist_input.npy")),
        &Default::default(),
    )
    .unwrap();
    let plan = p.plan.public();
    let digest = tfe_run::remote::plan_digest(&plan, 16);
    let request = tfe_run::remote::Request::Predict { plan, predictions: 1, frac_bits: 16, digest };
    let hello = tfe_run::remote::Control::Hello {
        version: tfe_run::remote::Version::current(),
        from: tfe_run::transport::Party::Client,
        session: 7,
        request: Some(Box::new(request)),
    };
    let control = tfe_run::transport::wire::Frame::Control(hello.encode()).encode();
    let message = tfe_run::transport::wire::Frame::Message {
        key: tfe_run::transport::MsgKey { session: 7, seq: 1, step: 2, tag: 3 },
        payload: vec![1; 40],
    }
    .encode();
    smoke(tfe_run::fuzzing::wire, &[control, message], 3000);
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
