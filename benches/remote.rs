//! Remote mode against the simulated mode, in the same run: `cargo bench --bench remote`.
//!
//! Starts server0, server1 and the crypto producer as separate `tfe-run serve`
//! processes on loopback (mutual TLS) and drives predictions of
//! `testdata/mnist_model.pb` through the library, at batch 1 and 100; then
//! again with a delay proxy in front of every party (one-way 1 ms and 10 ms) to
//! show how latency grows with rounds. Prints a markdown table (BENCHMARKS.md).
//! `BENCH_REPEAT` sets the repetitions (default 5; the median is shown).

#[path = "../tests/common/cluster.rs"]
mod cluster;
#[path = "../tests/common/delay.rs"]
mod delay;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cluster::Cluster;
use tfe_run::remote::driver;
use tfe_run::ring::FixedPoint;
use tfe_run::runtime::{self, Outcome, SecureConfig};
use tfe_run::transport::Party;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e6)
}

struct Row {
    setting: String,
    batch: usize,
    wall: Duration,
    latency: Duration,
    outcome: Outcome,
}

fn main() {
    let repeat: usize = std::env::var("BENCH_REPEAT").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let fp = FixedPoint::default();
    let mut rows: Vec<Row> = Vec::new();
    let mut clusters: Vec<(String, Cluster)> = vec![("loopback, TLS".into(), Cluster::start(false, 30.0))];
    for ms in [1, 10] {
        let c = Cluster::start_with_delay(false, 30.0, Some(Duration::from_millis(ms)));
        clusters.push((format!("loopback, TLS, +{ms} ms one-way"), c));
    }
    for (input, batch) in [("mnist_input.npy", 1), ("mnist_batch100.npy", 100)] {
        let p = tfe_run::cli::prepare(
            &testdata.join("mnist_model.pb"),
            None,
            Some(&testdata.join(input)),
            &BTreeMap::new(),
        )
        .expect("the shipped model prepares");
        let batches = std::slice::from_ref(&p.inputs);
        let mut measure = |setting: &str, run: &mut dyn FnMut() -> Outcome| {
            let mut walls = Vec::new();
            let mut latencies = Vec::new();
            let mut last = None;
            for _ in 0..repeat {
                let t = Instant::now();
                let outcome = run();
                walls.push(t.elapsed());
                latencies.push(outcome.stats.latency);
                last = Some(outcome);
            }
            let row = Row {
                setting: setting.to_string(),
                batch,
                wall: median(walls),
                latency: median(latencies),
                outcome: last.expect("at least one run"),
            };
            eprintln!("{setting}, batch {batch}: wall {:?}, latency {:?}", row.wall, row.latency);
            rows.push(row);
        };
        measure("simulated (threads)", &mut || {
            runtime::predict_many(&p.plan, batches, &SecureConfig::default()).expect("simulated run")
        });
        for (setting, cluster) in &clusters {
            if batch == 100 && setting.contains("+1") {
                continue;
            }
            let remote = cluster.remote();
            measure(setting, &mut || driver::predict(&remote, &p.plan, batches, fp).expect("remote run"));
        }
    }

    println!(
        "| setting | batch | wall time (session) | client latency | latency / simulated | server0 sent MB | rounds | crypto-producer sent MB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in &rows {
        let base = rows.iter().find(|r| r.batch == row.batch).expect("simulated row first");
        let s0 = &row.outcome.stats.parties[&Party::Server0].traffic;
        let dealer = &row.outcome.stats.parties[&Party::Dealer].traffic;
        println!(
            "| {} | {} | {:.1} ms | {:.1} ms | {:.2}x | {} | {} | {} |",
            row.setting,
            row.batch,
            row.wall.as_secs_f64() * 1e3,
            row.latency.as_secs_f64() * 1e3,
            row.latency.as_secs_f64() / base.latency.as_secs_f64(),
            mb(s0.bytes_sent),
            s0.rounds,
            mb(dealer.bytes_sent)
        );
    }
}
