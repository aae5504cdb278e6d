//! `cargo bench --bench train`: private training against the plaintext trainer,
//! in the same run, on testdata/training's two data sets (breast cancer: 455 rows
//! × 30 features, binary; MNIST subset: 1000 rows × 784 pixels, ten classes), with
//! the hyperparameters of testdata/training/manifest.json.
//!
//! Per data set: the median wall time of the whole run (plaintext: of 7 runs;
//! secure: of 3 runs after a warm-up, all five kinds of party in this process,
//! the dealer's work included), per epoch and as a secure/plaintext ratio; bytes
//! per epoch each party sent, rounds per step, and both models' test accuracy.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use tfe_run::runtime::SecureConfig;
use tfe_run::train::{self, OwnerData, TrainSpec, secure};
use tfe_run::transport::Party;

struct Data {
    name: &'static str,
    spec: TrainSpec,
    owners: Vec<OwnerData>,
    test: OwnerData,
}

/// The data set as the tests load it (tests/common): two owners and the test rows.
fn load(name: &'static str, prefix: &str, epochs: usize) -> Data {
    let (owners, test) = common::training_data(prefix);
    let spec = common::training_spec(&owners, epochs, 32, 0.5);
    Data { name, spec, owners, test }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    println!(
        "| data set | epochs × steps | plaintext / epoch | secure / epoch | secure ÷ plaintext | dealer (offline) / epoch | server0 sent / epoch | server1 sent / epoch | dealer sent / epoch | rounds / step | accuracy plaintext → secure |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for data in [load("breast cancer", "bc", 10), load("MNIST 1000", "mnist", 5)] {
        let Data { name, spec, owners, test } = &data;
        let mut plain_times = Vec::new();
        let mut plain = None;
        for _ in 0..7 {
            let start = Instant::now();
            plain = Some(train::train_plaintext(spec, owners, |_, _| {}).expect("plaintext training"));
            plain_times.push(start.elapsed());
        }
        let plain = plain.expect("ran");
        let config = SecureConfig::default();
        secure::train(spec, owners, &config, &|_, _| {}, None).expect("warm-up");
        let mut secure_times = Vec::new();
        let mut outcome = None;
        for _ in 0..3 {
            let start = Instant::now();
            outcome = Some(secure::train(spec, owners, &config, &|_, _| {}, None).expect("secure training"));
            secure_times.push(start.elapsed());
        }
        let outcome = outcome.expect("ran");
        let (tp, ts) = (median(plain_times), median(secure_times));
        let e = spec.epochs as f64;
        let steps = (spec.epochs * spec.steps_per_epoch()) as f64;
        let sent = |p: Party| outcome.stats.parties[&p].traffic.bytes_sent as f64 / e / 1e6;
        let rounds = outcome.stats.parties[&Party::Server0].traffic.rounds as f64 / steps;
        let acc = |m: &train::Model| 100.0 * m.accuracy(&test.features, &test.labels);
        println!(
            "| {name} | {} × {} | {:.2} ms | {:.1} ms | {:.0}× | {:.1} ms | {:.2} MB | {:.2} MB | {:.2} MB | {:.1} | {:.2}% → {:.2}% |",
            spec.epochs,
            spec.steps_per_epoch(),
            ms(tp) / e,
            ms(ts) / e,
            ts.as_secs_f64() / tp.as_secs_f64(),
            ms(outcome.stats.offline) / e,
            sent(Party::Server0),
            sent(Party::Server1),
            sent(Party::Dealer),
            rounds,
            acc(&plain.model),
            acc(&outcome.trained.model),
        );
    }
}
