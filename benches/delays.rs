//! Whole `tfe-run predict` processes across network delays, for both comparison
//! protocols: `cargo bench --bench delays`.
//!
//! Three `tfe-run serve` processes on loopback with mutual TLS, each behind the
//! test suite's delay proxy (tests/common/delay.rs: every connection to a party
//! delayed by the given one-way delay in each direction, as `tc netem` would on
//! a kernel that has it). `testdata/mnist_model.pb` is deployed twice
//! (`--batch-size 1 --comparison bitwise|fss`), then `BENCH_REPEAT` (default 5)
//! whole `tfe-run predict --model NAME testdata/mnist_input.npy` processes run
//! for each, alternating, after one untimed prediction each that fills the
//! client's cache of deployment descriptions; and as many with `--no-cache`,
//! which ask server1 for the description every time (one round trip more). The
//! table gives the median and the range. Every process must print the first
//! one's predicted classes (a wrong answer is not a timing). `BENCH_DELAYS`
//! (comma-separated milliseconds, default `0,1,10,25`) chooses the delays; 0 is
//! a proxy with no delay.

#[path = "../tests/common/cluster.rs"]
mod cluster;
#[path = "../tests/common/delay.rs"]
mod delay;

use std::path::Path;
use std::time::{Duration, Instant};

use cluster::Cluster;

const PROTOCOLS: [&str; 2] = ["bitwise", "fss"];

fn main() {
    let repeat: usize = std::env::var("BENCH_REPEAT").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let delays: Vec<u64> = std::env::var("BENCH_DELAYS")
        .unwrap_or_else(|_| "0,1,10,25".into())
        .split(',')
        .map(|d| d.trim().parse().expect("BENCH_DELAYS: milliseconds, comma-separated"))
        .collect();
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let model = testdata.join("mnist_model.pb");
    let input = testdata.join("mnist_input.npy");
    println!("| one-way delay | bitwise | fss | fss / bitwise | bitwise, `--no-cache` | fss, `--no-cache` |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for ms in delays {
        // A zero delay still goes through the proxy, so the rows differ only in the delay.
        let delay = if ms == 0 { Duration::from_micros(1) } else { Duration::from_millis(ms) };
        let cluster = Cluster::start_with_delay(false, 30.0, Some(delay));
        for protocol in PROTOCOLS {
            let out = cluster
                .command(&["deploy", "--name", protocol, "--batch-size", "1", "--comparison", protocol])
                .arg(&model)
                .output()
                .expect("deploy runs");
            assert!(out.status.success(), "deploy {protocol}: {}", String::from_utf8_lossy(&out.stderr));
        }
        // The cached runs, then the ones that ask server1 every time.
        let variants: Vec<(&str, &[&str])> = PROTOCOLS
            .iter()
            .map(|p| (*p, &[][..]))
            .chain(PROTOCOLS.iter().map(|p| (*p, &["--no-cache"][..])))
            .collect();
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
        let mut first: Option<Vec<String>> = None;
        for round in 0..=repeat {
            for (k, (protocol, extra)) in variants.iter().enumerate() {
                let t = Instant::now();
                let out = cluster
                    .command(&["predict", "--model", protocol])
                    .args(*extra)
                    .arg(&input)
                    .output()
                    .expect("predict runs");
                if round > 0 {
                    times[k].push(t.elapsed());
                }
                assert!(out.status.success(), "predict {protocol}: {}", String::from_utf8_lossy(&out.stderr));
                // The predicted class of each row: the logits' low digits may differ between protocols.
                let printed: Vec<String> = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| l.starts_with("row "))
                    .map(|l| l.split('|').next().unwrap_or_default().trim().to_string())
                    .collect();
                assert!(!printed.is_empty(), "predict {protocol} printed no row");
                match &first {
                    None => first = Some(printed),
                    Some(f) => assert_eq!(&printed, f, "{protocol} at +{ms} ms printed another prediction"),
                }
            }
        }
        let cell = |v: &mut Vec<Duration>| {
            v.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            (ms(v[v.len() / 2]), format!("{:.0} ms ({:.0}–{:.0})", ms(v[v.len() / 2]), ms(v[0]), ms(v[v.len() - 1])))
        };
        let (b, bitwise) = cell(&mut times[0]);
        let (f, fss) = cell(&mut times[1]);
        let (_, bitwise_asking) = cell(&mut times[2]);
        let (_, fss_asking) = cell(&mut times[3]);
        let label = if ms == 0 { "0 (a 1 µs proxy)".to_string() } else { format!("{ms} ms") };
        println!("| {label} | {bitwise} | {fss} | {:.2} | {bitwise_asking} | {fss_asking} |", f / b);
        eprintln!("+{ms} ms: bitwise {bitwise}, fss {fss}; --no-cache: bitwise {bitwise_asking}, fss {fss_asking}");
        // Every run, sorted: the table's range hides how many were slow.
        for ((protocol, extra), runs) in variants.iter().zip(&times) {
            let runs: Vec<String> = runs.iter().map(|d| format!("{:.0}", d.as_secs_f64() * 1e3)).collect();
            eprintln!("  {protocol} {}: {} ms", extra.join(" "), runs.join(", "));
        }
    }
}
