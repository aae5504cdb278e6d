//! `--stats`: what each party sent and received, how many rounds, how long, and a
//! per-layer breakdown with the communication the protocol's formulas predict.

use std::fmt::Write;

use anyhow::Result;

use crate::lower::Program;
use crate::runtime::{PartyStats, Stats};
use crate::train::{TrainSpec, secure};
use crate::transport::Party;

fn mb(bytes: u64) -> String {
    format!("{:.3} MB", bytes as f64 / 1e6)
}

/// What each party sent and received, its messages and rounds.
fn party_table<'a>(s: &mut String, rows: impl Iterator<Item = (String, &'a PartyStats)>) -> Result<()> {
    writeln!(s, "{:<16} {:>12} {:>12} {:>8} {:>8}", "party", "sent", "received", "msgs", "rounds")?;
    for (name, p) in rows {
        writeln!(
            s,
            "{:<16} {:>12} {:>12} {:>8} {:>8}",
            name,
            mb(p.traffic.bytes_sent),
            mb(p.traffic.bytes_received),
            p.traffic.messages_sent,
            p.traffic.rounds
        )?;
    }
    Ok(())
}

pub fn report(program: &Program, stats: &Stats) -> Result<String> {
    let plan = &program.plan;
    let planned = program.planned();
    let mut s = String::new();
    writeln!(s, "secure run: {} prediction(s)", stats.predictions)?;
    writeln!(
        s,
        "time: set-up {:.1} ms, dealer (offline) {:.1} ms, servers (online) {:.1} ms, client latency {:.1} ms",
        stats.setup.as_secs_f64() * 1e3,
        stats.offline.as_secs_f64() * 1e3,
        stats.online.as_secs_f64() * 1e3,
        stats.latency.as_secs_f64() * 1e3
    )?;
    writeln!(s, "estimated peak memory (the --max-memory check): {}", mb(program.estimate_memory()))?;
    party_table(&mut s, stats.parties.iter().map(|(p, st)| (p.name().to_string(), st)))?;
    let (without, with) = stats.dealer_bytes();
    writeln!(
        s,
        "dealer: sent {} thanks to seeds; without them it would send {} ({:.1}x more)",
        mb(with),
        mb(without),
        without as f64 / with.max(1) as f64
    )?;
    writeln!(s, "per layer (server0, per prediction; planned from the formulas in docs/PROTOCOL.md):")?;
    writeln!(
        s,
        "{:>4} {:<14} {:<40} {:>12} {:>12} {:>7} {:>7} {:>9}",
        "step", "op", "node", "sent", "planned", "rounds", "planned", "ms"
    )?;
    let server0 = stats.parties.get(&Party::Server0);
    let n = stats.predictions.max(1) as u64;
    for (k, plan_k) in planned.iter().enumerate() {
        let step = &plan.steps[k];
        let measured = server0.and_then(|p| p.per_layer.get(&k)).cloned().unwrap_or_default();
        let time = stats.layer_time.get(&k).map_or(0.0, |d| d.as_secs_f64() * 1e3 / n as f64);
        let mut node = step.node.clone();
        if node.len() > 40 {
            node = format!("…{}", &node[node.len() - 39..]);
        }
        writeln!(
            s,
            "{:>4} {:<14} {:<40} {:>12} {:>12} {:>7} {:>7} {:>9.2}",
            k,
            step.op.name(),
            node,
            mb(measured.bytes_sent / n),
            mb(plan_k.bytes),
            measured.rounds / n,
            plan_k.rounds,
            time
        )?;
    }
    if let Some(f) = program.client_final {
        writeln!(s, "client applies {f:?} to the opened output")?;
    }
    Ok(s)
}

/// What [`report`] prints, as one JSON object (the Python package's
/// `predict(..., stats=True)`): `predictions`, the times in milliseconds, the
/// estimated peak memory, per party its traffic, the dealer's bytes with and
/// without seeds, and per layer server0's measured bytes and rounds per
/// prediction beside those planned.
pub fn json(program: &Program, stats: &Stats) -> serde_json::Value {
    use serde_json::json;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let traffic = |t: &crate::transport::Traffic| json!({"bytes_sent": t.bytes_sent, "bytes_received": t.bytes_received, "messages_sent": t.messages_sent, "rounds": t.rounds});
    let parties: serde_json::Map<String, serde_json::Value> =
        stats.parties.iter().map(|(p, st)| (p.name().to_string(), traffic(&st.traffic))).collect();
    let (without, with) = stats.dealer_bytes();
    let server0 = stats.parties.get(&Party::Server0);
    let n = stats.predictions.max(1) as u64;
    let layers: Vec<serde_json::Value> = (program.planned().iter().enumerate())
        .map(|(k, planned)| {
            let step = &program.plan.steps[k];
            let measured = server0.and_then(|p| p.per_layer.get(&k)).cloned().unwrap_or_default();
            json!({
                "step": k, "op": step.op.name(), "node": step.node,
                "bytes_sent": measured.bytes_sent / n, "planned_bytes": planned.bytes,
                "rounds": measured.rounds / n, "planned_rounds": planned.rounds,
                "ms": stats.layer_time.get(&k).map_or(0.0, |d| ms(*d) / n as f64),
            })
        })
        .collect();
    json!({
        "predictions": stats.predictions,
        "setup_ms": ms(stats.setup), "offline_ms": ms(stats.offline),
        "online_ms": ms(stats.online), "latency_ms": ms(stats.latency),
        "estimated_peak_memory_bytes": program.estimate_memory(),
        "parties": parties,
        "dealer_bytes_sent": with, "dealer_bytes_without_seeds": without,
        "layers": layers,
    })
}

/// `train --stats`: the parties (each data owner on its own line), then server
/// 0's bytes, rounds and time per phase of a step beside what the formulas plan.
pub fn train_report(spec: &TrainSpec, stats: &Stats, owners: &[PartyStats]) -> Result<String> {
    let steps = (spec.steps_per_epoch() * spec.epochs).max(1);
    let mut s = String::new();
    writeln!(s, "secure training: {} steps ({} epochs of {})", steps, spec.epochs, spec.steps_per_epoch())?;
    writeln!(
        s,
        "time: set-up {:.1} ms, dealer (offline) {:.1} ms, servers {:.1} ms ({:.1} ms per epoch)",
        stats.setup.as_secs_f64() * 1e3,
        stats.offline.as_secs_f64() * 1e3,
        stats.online.as_secs_f64() * 1e3,
        stats.online.as_secs_f64() * 1e3 / spec.epochs.max(1) as f64
    )?;
    let parties = stats.parties.iter().map(|(p, st)| (p.name().to_string(), st));
    let data_owners = owners.iter().enumerate().map(|(j, st)| (format!("data-owner {}", j + 1), st));
    party_table(&mut s, parties.chain(data_owners))?;
    let (without, with) = stats.dealer_bytes();
    writeln!(s, "dealer: sent {} thanks to seeds; without them it would send {}", mb(with), mb(without))?;
    writeln!(s, "per step (server0, averaged over the {steps} steps; planned from the formulas in docs/TRAINING.md):")?;
    writeln!(s, "{:<22} {:>12} {:>12} {:>7} {:>8} {:>9}", "phase", "sent", "planned", "rounds", "planned", "ms")?;
    let server0 = stats.parties.get(&Party::Server0);
    let planned = secure::planned(spec);
    for (k, name) in secure::PHASES.iter().enumerate() {
        let t = server0.and_then(|p| p.per_layer.get(&k)).cloned().unwrap_or_default();
        let ms = stats.layer_time.get(&k).map_or(0.0, |d| d.as_secs_f64() * 1e3);
        let per = |x: u64| x as f64 / steps as f64;
        writeln!(
            s,
            "{:<22} {:>12} {:>12} {:>7.1} {:>8.1} {:>9.3}",
            name,
            mb(t.bytes_sent / steps as u64),
            mb(planned[k].bytes / steps as u64),
            per(t.rounds),
            per(planned[k].rounds),
            ms / steps as f64
        )?;
    }
    Ok(s)
}
