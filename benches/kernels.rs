//! `cargo bench --bench kernels`: the hot loops alone, so that each can be improved
//! and measured by itself (`-- GROUP` runs one group, `-- --quick` a short run).
//!
//! Groups, each at the shapes that matter for tf-encrypted's MNIST at batch 100:
//! - `ring_gemm`: `kernels::linear::ring_gemm` (Z_2^64, the AVX2 version where the
//!   processor has it) at the two convolutions' im2col products, 57600×25×16 and
//!   6400×400×16, and a dense layer, 100×784×128. An element is one multiply-add.
//! - `prg`: `Prg::fill` of 1 Mi words (AES-128-CTR output), the same from
//!   ChaCha20 (`rand_chacha`, the stream `Prg` used before, as the baseline), and
//!   `Prg::derive` alone (one derivation per stream of material).
//! - `conv2d`: `kernels::linear::conv2d` on ring elements (the patches built a
//!   block at a time and multiplied by the filter) at the two convolutions,
//!   [100, 28, 28, 1] by a 5×5×1×16 filter and [100, 12, 12, 16] by 5×5×16×16,
//!   VALID. An element is one multiply-add, as in `ring_gemm`.
//! - `drelu_level`: one server's local work at each level of DReLU's comparison
//!   for 1 Mi elements (level 0, the AND levels 1–6, the sign bits 7), between two
//!   openings, without the network or the material's expansion (that is `prg`).
//!   `s0` is server 0, which also computes the AND triples' correlated words;
//!   `s1` server 1, which reads them from the dealer's message.
//! - `dcf`: the DCF of `--comparison fss` (`protocol::fss::dcf`) over 63-bit
//!   inputs with one and two payload words (DReLU, ReLU): the dealer's key
//!   generation and one server's batched evaluation, per element.

use std::hint::black_box;
use std::num::Wrapping;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array2, ArrayD, IxDyn};
use tfe_run::kernels::linear::{conv2d, ring_gemm};
use tfe_run::kernels::{Layout, Padding, Window};
use tfe_run::protocol::Width;
use tfe_run::protocol::compare::bench_api;
use tfe_run::ring::{FixedPoint, Prg, StreamKey, Z};

const SEED: [u8; 32] = [0x42; 32];
const MI: usize = 1 << 20;

fn key(id: u32) -> StreamKey {
    StreamKey { domain: 0, seq: 0, id, tag: 0 }
}

fn ring_words(id: u32, n: usize) -> Vec<Z> {
    Prg::derive(&SEED, key(id)).words(n).into_iter().map(Wrapping).collect()
}

fn ring_matrix(id: u32, rows: usize, cols: usize) -> Array2<Z> {
    Array2::from_shape_vec((rows, cols), ring_words(id, rows * cols)).expect("rows × cols words")
}

fn bench_ring_gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_gemm");
    for (name, m, k, n) in [
        ("conv1_57600x25x16", 57600, 25, 16),
        ("conv2_6400x400x16", 6400, 400, 16),
        ("dense_100x784x128", 100, 784, 128),
    ] {
        let (a, b) = (ring_matrix(1, m, k), ring_matrix(2, k, n));
        group.throughput(Throughput::Elements((m * k * n) as u64));
        group.bench_function(name, |bench| bench.iter(|| ring_gemm(black_box(a.view()), black_box(b.view()))));
    }
    group.finish();
}

fn bench_prg(c: &mut Criterion) {
    let mut group = c.benchmark_group("prg");
    let mut prg = Prg::derive(&SEED, key(3));
    let mut words = vec![0u64; MI];
    group.throughput(Throughput::Bytes((8 * MI) as u64));
    group.bench_function("fill_1Mi_words", |bench| bench.iter(|| prg.fill(black_box(&mut words))));
    let mut chacha = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed(SEED);
    group.bench_function("chacha20_fill_1Mi_words", |bench| {
        bench.iter(|| rand_core::Rng::fill_bytes(&mut chacha, bytemuck::cast_slice_mut(black_box(&mut words[..]))))
    });
    group.throughput(Throughput::Elements(1));
    let mut tag = 0u32;
    group.bench_function("derive", |bench| {
        bench.iter(|| {
            tag = tag.wrapping_add(1);
            Prg::derive(black_box(&SEED), StreamKey { domain: 1, seq: 2, id: 3, tag })
        })
    });
    group.finish();
}

fn bench_conv2d(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d");
    let window =
        Window { kernel: [5, 5], strides: [1, 1], dilations: [1, 1], padding: Padding::Valid, layout: Layout::Nhwc };
    for (name, [h, w, ci]) in [("conv1_100x28x28x1_5x5x16", [28, 28, 1]), ("conv2_100x12x12x16_5x5x16", [12, 12, 16])] {
        let x = ArrayD::from_shape_vec(IxDyn(&[100, h, w, ci]), ring_words(4, 100 * h * w * ci)).expect("NHWC words");
        let f = ArrayD::from_shape_vec(IxDyn(&[5, 5, ci, 16]), ring_words(5, 25 * ci * 16)).expect("HWIO words");
        let g = window.geometry([h, w]).expect("a 5×5 window fits");
        group.throughput(Throughput::Elements((100 * g.out[0] * g.out[1] * 25 * ci * 16) as u64));
        group.bench_function(name, |bench| bench.iter(|| conv2d(black_box(&x), &f, &window)));
    }
    group.finish();
}

fn bench_drelu_levels(c: &mut Criterion) {
    let mut group = c.benchmark_group("drelu_level");
    group.throughput(Throughput::Elements(MI as u64));
    // The whole ring, and the width of values at 16 fractional bits.
    let widths = [("ring", Width::RING), ("values", Width::in_range(FixedPoint::default()))];
    for (width_name, width) in widths {
        for level in 0..bench_api::levels(width) {
            for (server, first) in [("s0", true), ("s1", false)] {
                let inputs = bench_api::Level::new(first, level, MI, width);
                let id = BenchmarkId::new(format!("{width_name}/{server}"), level);
                group.bench_function(id, |bench| bench.iter(|| black_box(&inputs).run()));
            }
        }
    }
    group.finish();
}

fn bench_dcf(c: &mut Criterion) {
    use tfe_run::protocol::fss::dcf::{self, Shape};
    const N: usize = 4096;
    let mut group = c.benchmark_group("dcf");
    group.throughput(Throughput::Elements(N as u64));
    let words = Prg::derive(&SEED, key(9)).words(4 * N);
    for payload in [1usize, 2] {
        let shape = Shape::new(63, payload);
        let roots: Vec<u128> =
            words.chunks_exact(2).take(N).map(|w| u128::from(w[0]) | u128::from(w[1]) << 64).collect();
        let generate = |out: &mut Vec<u8>| {
            for (e, r) in roots.iter().enumerate() {
                dcf::generate(shape, words[e] >> 1, &words[e..e + payload], [*r, r.rotate_left(7)], out);
            }
        };
        group.bench_function(BenchmarkId::new("keygen", payload), |bench| {
            bench.iter(|| {
                let mut keys = Vec::with_capacity(N * shape.key_bytes());
                generate(&mut keys);
                keys
            })
        });
        // The dealer's way: LANES keys a batch, both parties' expansions in one call.
        let alphas: Vec<u64> = words[..N].iter().map(|w| w >> 1).collect();
        let betas: Vec<u64> = (0..N).flat_map(|e| words[e..e + payload].iter().copied()).collect();
        let pairs: Vec<[u128; 2]> = roots.iter().map(|r| [*r, r.rotate_left(7)]).collect();
        group.bench_function(BenchmarkId::new("keygen_many", payload), |bench| {
            bench.iter(|| {
                let mut keys = Vec::with_capacity(N * shape.key_bytes());
                dcf::generate_many(shape, &alphas, &betas, &pairs, &mut keys);
                keys
            })
        });
        let mut keys = Vec::new();
        generate(&mut keys);
        let x: Vec<u64> = words[N..2 * N].iter().map(|w| w >> 1).collect();
        let mut out = vec![0u64; payload * N];
        group.bench_function(BenchmarkId::new("eval", payload), |bench| {
            bench.iter(|| dcf::evaluate(shape, 0, black_box(&roots), &keys, &x, &mut out))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    // The large kernels take tens of milliseconds an iteration: fewer samples keep a
    // full run to a few minutes on two cores.
    Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = kernels;
    config = config();
    targets = bench_ring_gemm, bench_prg, bench_conv2d, bench_drelu_levels, bench_dcf
}
criterion_main!(kernels);
