//! Private training: logistic regression by mini-batch SGD on secret shares.
//!
//! Several data owners each secret-share their own rows (features and 0/1 labels)
//! between the two servers; the servers train on the shares with the crypto
//! producer's help, and only the model owner (whoever runs `tfe-run train`)
//! learns the trained weights, and the mean training loss of each epoch. The
//! algorithm, in the clear, is [`train_plaintext`]; the secure run ([`secure`])
//! computes the same steps in fixed point:
//!
//! ```text
//! X' = [X, 1]                          (a ones column carries the bias)
//! W  = 0                               ([d+1, k]; k = 1 for binary labels)
//! for each epoch, for each batch of rows (file order, or a public shuffle):
//!     z = X'_B W,   p = σ(z)           (σ: the piecewise sigmoid of the protocol)
//!     loss += Σ softplus(z) − y·z      (binary cross-entropy, before the update)
//!     W -= lr/|B| · X'_Bᵀ (p − y)
//! ```
//!
//! Multi-class labels train k one-vs-rest outputs at once (a k-column W). What is
//! public: every owner's row count, the number of features and classes, and the
//! hyperparameters (so the servers know which rows form each batch).

pub mod export;
pub mod secure;

use std::path::PathBuf;

use anyhow::Result;
use ndarray::{Array1, Array2, Axis, s};

use crate::error::Error;
use rand_core::{Rng, SeedableRng};

use crate::plan::MAX_VALUE_ELEMENTS;
use crate::protocol::trunc::MAX_SHIFT;
use crate::ring::FixedPoint;

/// The public description of a training run: what every party agrees on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainSpec {
    /// Rows of each data owner, in the order their rows are concatenated.
    pub owners: Vec<usize>,
    /// Features per row (d).
    pub features: usize,
    /// Sigmoid outputs (k): 1 for binary labels, the class count otherwise.
    pub outputs: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Every feature's magnitude is at most this (checked by each owner); it
    /// bounds the fixed-point range of an update step (see [`TrainSpec::update_bits`]).
    pub feature_bound: f64,
    /// A public seed for shuffling the rows each epoch; `None`: file order.
    pub shuffle: Option<[u8; 32]>,
    pub frac_bits: u32,
    /// Names of data sets the servers already hold (`tfe-run contribute`): the
    /// first `held.len()` owners; the others share their rows in the session.
    #[serde(default)]
    pub held: Vec<String>,
    /// The comparison protocol of the sigmoid's DReLUs (absent: bitwise, as
    /// before the choice existed).
    #[serde(default, skip_serializing_if = "crate::protocol::Comparison::is_bitwise")]
    pub comparison: crate::protocol::Comparison,
}

/// A feature bound must be a number of at least 1 (the ones column is a feature).
pub fn check_feature_bound(bound: f64) -> Result<()> {
    if !(bound.is_finite() && bound >= 1.0) {
        return Err(Error::bad_input(format!("--feature-bound {bound}: must be a number of at least 1")));
    }
    Ok(())
}

/// The public description of a data set the servers hold for training.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetInfo {
    pub rows: usize,
    pub features: usize,
    pub outputs: usize,
    pub frac_bits: u32,
    /// The bound its owner checked every feature against.
    pub feature_bound: f64,
}

// A description arrives from the network: nothing here may panic or overflow.
#[cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]
impl DatasetInfo {
    /// Refuse a description no contribution could have (before allocating for it).
    pub fn check(&self) -> Result<()> {
        FixedPoint::new(self.frac_bits)?;
        let width = self.features.checked_add(self.outputs);
        if width.and_then(|w| w.checked_mul(self.rows)).is_none_or(|e| e > MAX_VALUE_ELEMENTS) {
            return Err(Error::bad_input(format!("a data set of {self:?} is too large (over 2^34 values)")));
        }
        if self.rows == 0 || self.features == 0 || self.outputs == 0 {
            return Err(Error::bad_input(format!("a data set of {self:?} has nothing to train on")));
        }
        check_feature_bound(self.feature_bound)
    }

    /// Bytes a server needs to hold the data set's shares.
    pub fn bytes(&self) -> u64 {
        (8.0 * self.rows as f64 * (self.features as f64 + self.outputs as f64)).min(u64::MAX as f64) as u64
    }

    /// The description of one owner's rows as the spec `spec` shares them.
    pub fn of_owner(spec: &TrainSpec, rows: usize) -> DatasetInfo {
        DatasetInfo {
            rows,
            features: spec.features,
            outputs: spec.outputs,
            frac_bits: spec.frac_bits,
            feature_bound: spec.feature_bound,
        }
    }
}

/// The most training steps of a run: step t is prediction number t + 1 of its
/// messages and streams (a u32; 0 is the set-up).
pub const MAX_STEPS: usize = u32::MAX as usize - 1;
/// The most data owners of a run: owner j's shares are message tags 3j..3j + 2.
pub const MAX_OWNERS: usize = (u32::MAX / 3) as usize;

/// The largest extra precision given to the learning-rate factor lr/|B|.
const MAX_UPDATE_BITS: u32 = 40;
/// The learning-rate factor must keep at least this many significant bits.
const MIN_UPDATE_SIGNIFICANT_BITS: u32 = 12;

impl TrainSpec {
    pub fn rows(&self) -> usize {
        self.owners.iter().sum()
    }

    pub fn fp(&self) -> FixedPoint {
        FixedPoint { frac_bits: self.frac_bits }
    }

    /// Refuse settings that cannot train, with the option at fault.
    // A spec arrives from the network: nothing here may panic or overflow.
    #[cfg_attr(
        not(test),
        deny(
            clippy::unwrap_used,
            clippy::expect_used,
            clippy::panic,
            clippy::indexing_slicing,
            clippy::arithmetic_side_effects
        )
    )]
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::bad_input(m));
        FixedPoint::new(self.frac_bits)?;
        // A spec also arrives from the network: every size is checked before any
        // arithmetic on it could overflow, and bounded like a plan's values.
        let rows = self.owners.iter().try_fold(0usize, |a, &n| a.checked_add(n));
        let elements = |count: Option<usize>, per: usize| count.and_then(|c| c.checked_mul(per));
        let width = self.features.checked_add(1).and_then(|w| w.checked_add(self.outputs));
        let sizes = [
            width.and_then(|w| elements(rows, w)),
            elements(self.features.checked_add(1), self.outputs),
            elements(self.batch_size.checked_mul(25), self.outputs),
        ];
        if sizes.iter().any(|s| s.is_none_or(|s| s > MAX_VALUE_ELEMENTS)) {
            return bad(format!(
                "{:?} rows of {} features and {} outputs, batch {}: too large (over 2^34 values)",
                self.owners, self.features, self.outputs, self.batch_size
            ));
        }
        if self.owners.is_empty() || self.rows() == 0 {
            return bad("no training rows: give at least one --features/--labels pair with rows".into());
        }
        if self.features == 0 || self.outputs == 0 {
            return bad(format!("{} features and {} outputs: nothing to train", self.features, self.outputs));
        }
        if self.epochs == 0 || self.batch_size == 0 {
            return bad(format!("--epochs {} --batch-size {}: both must be at least 1", self.epochs, self.batch_size));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!("--learning-rate {}: must be a positive number", self.learning_rate));
        }
        check_feature_bound(self.feature_bound)?;
        // Steps number the predictions' field (u32) of message and stream keys.
        let steps = self.steps_per_epoch().checked_mul(self.epochs);
        if steps.is_none_or(|s| s > MAX_STEPS) {
            return bad(format!(
                "{} epochs of {} batches: too many steps (at most {MAX_STEPS})",
                self.epochs,
                self.steps_per_epoch()
            ));
        }
        // Each owner's shares are three message tags (u32) of one step.
        if self.owners.len() > MAX_OWNERS {
            return bad(format!("{} data owners: at most {MAX_OWNERS}", self.owners.len()));
        }
        self.update_bits()?;
        if self.held.len() > self.owners.len() {
            return bad(format!("{} held data sets but {} owners", self.held.len(), self.owners.len()));
        }
        if let Some(name) = self.held.iter().enumerate().find_map(|(i, n)| self.held.get(..i)?.contains(n).then_some(n))
        {
            return bad(format!("data set `{name}` is named twice"));
        }
        Ok(())
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.rows().div_ceil(self.batch_size.max(1))
    }

    /// The largest message of the run, in bytes: the servers' opening of the
    /// masked training set (all rows, with the ones column) in the set-up.
    pub fn largest_message(&self) -> u64 {
        8 * self.rows() as u64 * (self.features as u64 + 1)
    }

    /// The rows of each step of epoch `epoch`.
    pub fn epoch_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        let n = self.rows();
        let mut order: Vec<usize> = (0..n).collect();
        if let Some(seed) = &self.shuffle {
            // Fisher–Yates from a public ChaCha20 stream: the order reveals nothing
            // about the data, and every party derives the same one.
            let mut rng = rand_chacha::ChaCha20Rng::from_seed(*seed);
            rng.set_stream(epoch as u64);
            for i in (1..n).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
        }
        order.chunks(self.batch_size.max(1)).map(<[usize]>::to_vec).collect()
    }

    /// Every step's rows with its global step number (from 0), epoch after epoch.
    pub fn steps(&self) -> impl Iterator<Item = (usize, Vec<usize>)> + '_ {
        let per_epoch = self.steps_per_epoch();
        (0..self.epochs).flat_map(move |e| {
            self.epoch_batches(e).into_iter().enumerate().map(move |(j, rows)| (e * per_epoch + j, rows))
        })
    }

    /// Estimated peak memory of a run with every party in one process, in bytes.
    ///
    /// At the peak of the set-up the training set is held about 11 times over
    /// (8 bytes a value; each server's rows, mask, masked copy and the two
    /// messages of the opening, the dealer's mask, the owners' messages), counted
    /// here as 16 for margin; then one step's comparison material (25
    /// breakpoints × B·k elements × 2 functions × 64 words, generously) and the
    /// process itself. Measured peak RSS against this estimate: 32 vs 35 MiB
    /// (breast cancer), 123 vs 138 MiB (MNIST, 1000 rows), 425 vs 623 MiB (6000 rows).
    pub fn estimate_memory(&self) -> u64 {
        let set = self.rows() as f64 * (self.features as f64 + 1.0 + self.outputs as f64);
        let step = self.batch_size as f64 * self.outputs as f64 * 25.0 * 2.0 * 64.0;
        let weights = (self.features as f64 + 1.0) * self.outputs as f64 * 16.0;
        let bytes = crate::lower::BASE_MEMORY as f64 + 8.0 * (16.0 * set + step + weights);
        bytes.min(u64::MAX as f64) as u64
    }

    /// Fractional bits P of the learning-rate factor c = round(lr/|B| · 2^P).
    ///
    /// The servers compute the update lr/|B| · X'ᵀ(p − y) as the product X'ᵀ(p − y)
    /// (2f fractional bits) times the public integer c, and truncate by f + P. Its
    /// true magnitude is at most lr·R·(1 + ε) (R the feature bound: each of the
    /// |B| terms is at most R·|p − y| ≤ R(1 + ε)), so with 2f + P fractional bits it
    /// stays below 2^61, the truncation's range, when
    /// P ≤ 61 − 2f − log2(lr·R·1.01). The truncation shifts by at most 62 bits
    /// ([`MAX_SHIFT`]), so also P ≤ 62 − f: past it the shift's constants wrap
    /// and the weights become garbage.
    pub fn update_bits(&self) -> Result<u32> {
        let room = 61.0 - 2.0 * f64::from(self.frac_bits) - (self.learning_rate * self.feature_bound * 1.01).log2();
        let in_range = room.floor().min(f64::from(MAX_UPDATE_BITS));
        let bits = in_range.min(f64::from(MAX_SHIFT) - f64::from(self.frac_bits));
        let smallest = self.learning_rate / self.batch_size as f64;
        let precise = |bits: f64| smallest * 2f64.powf(bits) >= f64::from(1u32 << MIN_UPDATE_SIGNIFICANT_BITS);
        if bits >= 0.0 && !precise(bits) && precise(in_range) {
            return Err(Error::bad_input(format!(
                "--learning-rate {} with --batch-size {} is too small for --frac-bits {}: the update is truncated \
                 by the fractional bits plus those of learning rate / batch size, at most {MAX_SHIFT} bits, which \
                 leaves learning rate / batch size fewer than {MIN_UPDATE_SIGNIFICANT_BITS} significant bits: \
                 raise the learning rate, lower the batch size, or use fewer --frac-bits",
                self.learning_rate, self.batch_size, self.frac_bits
            )));
        }
        if bits < 0.0 || !precise(bits) {
            return Err(Error::bad_input(format!(
                "--learning-rate {} with --batch-size {}, --feature-bound {} and {} fractional bits does not fit \
                 the fixed-point range: lower the learning rate or the feature bound (scale the features), \
                 or use fewer --frac-bits",
                self.learning_rate, self.batch_size, self.feature_bound, self.frac_bits
            )));
        }
        Ok(bits as u32)
    }

    /// The public integer c = round(lr/rows · 2^P) of a step over `rows` rows.
    pub fn update_factor(&self, rows: usize, bits: u32) -> u64 {
        (self.learning_rate / rows as f64 * 2f64.powi(bits as i32)).round() as u64
    }
}

/// One data owner's rows as read from its files, before the label encoding is
/// agreed.
#[derive(Debug, Clone)]
pub struct OwnerFiles {
    pub features_path: PathBuf,
    pub labels_path: PathBuf,
    pub features: Array2<f32>,
    /// The labels as read: [n] or [n, 1] (0/1 or class ids) or [n, k] (one-hot).
    pub labels: ndarray::ArrayD<f32>,
}

/// One data owner's rows, ready to share: labels as 0/1 columns.
#[derive(Debug, Clone)]
pub struct OwnerData {
    pub name: String,
    pub features: Array2<f32>,
    /// [n, k], every entry 0 or 1.
    pub labels: Array2<f32>,
}

/// Read one owner's features ([n, d]) and labels, checking the features against
/// the bound (so that no value outside the fixed-point range reaches a share).
pub fn read_owner(
    features_path: &crate::npy::Input,
    labels_path: &crate::npy::Input,
    feature_bound: f64,
) -> Result<OwnerFiles> {
    let fname = features_path.name();
    let x = features_path.read()?;
    if x.ndim() != 2 {
        return Err(Error::bad_input(format!("features `{fname}`: shape {:?}, expected [rows, features]", x.shape())));
    }
    let features = x.into_dimensionality::<ndarray::Ix2>()?;
    if let Some(((r, c), v)) = features.indexed_iter().find(|(_, v)| v.is_nan() || f64::from(v.abs()) > feature_bound) {
        return Err(Error::bad_input(format!(
            "features `{fname}`: row {r}, column {c}: value {v} is outside --feature-bound {feature_bound}; \
             scale the features first (see docs/TRAINING.md) or raise the bound"
        )));
    }
    let labels = labels_path.read()?;
    let lname = labels_path.name();
    if labels.ndim() == 0 || labels.ndim() > 2 || labels.shape()[0] != features.nrows() {
        return Err(Error::bad_input(format!(
            "labels `{lname}`: shape {:?}, expected [{n}], [{n}, 1] or [{n}, classes] to match the {n} rows of `{fname}`",
            labels.shape(),
            n = features.nrows()
        )));
    }
    Ok(OwnerFiles { features_path: fname.into(), labels_path: lname.into(), features, labels })
}

/// Agree on the outputs k and turn every owner's labels into 0/1 columns.
///
/// `classes`: `--classes`, if given. Otherwise one-hot labels ([n, k], k ≥ 2)
/// give k; integer class ids give the largest id + 1, unless every id is 0 or 1,
/// which is binary (one output).
pub fn encode_labels(owners: Vec<OwnerFiles>, classes: Option<usize>) -> Result<(Vec<OwnerData>, usize)> {
    let bad = |m: String| Err(Error::bad_input(m));
    let features = owners.first().map_or(0, |o| o.features.ncols());
    for o in &owners {
        if o.features.ncols() != features {
            return bad(format!(
                "features `{}` has {} columns but `{}` has {features}: every owner must have the same features",
                o.features_path.display(),
                o.features.ncols(),
                owners[0].features_path.display()
            ));
        }
    }
    let is_one_hot = |o: &OwnerFiles| o.labels.ndim() == 2 && o.labels.shape()[1] >= 2;
    let mut max_id = 0usize;
    for o in owners.iter().filter(|o| !is_one_hot(o)) {
        if let Some((i, v)) = o.labels.iter().enumerate().find(|(_, v)| !(v.fract() == 0.0 && **v >= 0.0)) {
            return bad(format!(
                "labels `{}`: row {i} is {v}; labels must be 0/1, class ids 0, 1, 2, … or one-hot rows",
                o.labels_path.display()
            ));
        }
        max_id = max_id.max(o.labels.iter().fold(0.0f32, |a, &b| a.max(b)) as usize);
    }
    let one_hot_widths: Vec<usize> = owners.iter().filter(|o| is_one_hot(o)).map(|o| o.labels.shape()[1]).collect();
    let k = match (classes, one_hot_widths.first()) {
        (Some(k), _) => k,
        (None, Some(&w)) => w,
        (None, None) if max_id <= 1 => 1,
        (None, None) => max_id + 1,
    };
    if k == 0 {
        return bad("--classes 0: there must be at least one class".into());
    }
    let mut out = Vec::with_capacity(owners.len());
    for o in owners {
        let lname = o.labels_path.display().to_string();
        let n = o.features.nrows();
        let mut y = Array2::<f32>::zeros((n, k));
        if is_one_hot(&o) {
            let width = o.labels.shape()[1];
            if width != k {
                return bad(format!("labels `{lname}`: one-hot rows of {width} columns, but there are {k} classes"));
            }
            for (r, row) in o.labels.axis_iter(Axis(0)).enumerate() {
                let ones = row.iter().filter(|&&v| v == 1.0).count();
                if ones != 1 || row.iter().any(|&v| v != 0.0 && v != 1.0) {
                    return bad(format!("labels `{lname}`: row {r} is not one-hot (exactly one 1, the rest 0)"));
                }
                y.row_mut(r).assign(&row.to_shape(k)?);
            }
        } else {
            for (r, &v) in o.labels.iter().enumerate() {
                let id = v as usize;
                match k {
                    1 if id <= 1 => y[[r, 0]] = v,
                    1 => return bad(format!("labels `{lname}`: row {r} is {v}, but binary labels are 0 or 1")),
                    _ if id < k => y[[r, id]] = 1.0,
                    _ => return bad(format!("labels `{lname}`: row {r} is class {id}, but there are {k} classes")),
                }
            }
        }
        out.push(OwnerData { name: o.features_path.display().to_string(), features: o.features, labels: y });
    }
    Ok((out, k))
}

/// A trained logistic-regression model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// [d, k]
    pub weights: Array2<f64>,
    /// [k]
    pub bias: Array1<f64>,
}

impl Model {
    /// From the [d+1, k] matrix of the training run (its last row is the bias).
    pub fn from_extended(w: &Array2<f64>) -> Model {
        let d = w.nrows() - 1;
        Model { weights: w.slice(s![..d, ..]).to_owned(), bias: w.row(d).to_owned() }
    }

    /// σ(XW + b): one probability per row and output.
    pub fn predict(&self, x: &Array2<f32>) -> Array2<f64> {
        let logits = x.mapv(f64::from).dot(&self.weights) + &self.bias;
        logits.mapv(sigmoid)
    }

    /// The fraction of rows classified right: p ≥ 0.5 for one output, the
    /// largest output for several.
    pub fn accuracy(&self, x: &Array2<f32>, labels: &Array2<f32>) -> f64 {
        let p = self.predict(x);
        let right = p
            .axis_iter(Axis(0))
            .zip(labels.axis_iter(Axis(0)))
            .filter(|(p, y)| if p.len() == 1 { (p[0] >= 0.5) == (y[0] == 1.0) } else { argmax(p) == argmax(y) })
            .count();
        right as f64 / x.nrows().max(1) as f64
    }
}

fn argmax<'a>(v: impl IntoIterator<Item = &'a (impl PartialOrd + Copy + 'a)>) -> usize {
    let mut best = None;
    for (i, &x) in v.into_iter().enumerate() {
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map_or(0, |(i, _)| i)
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A finished training run: the model and each epoch's mean training loss.
#[derive(Debug, Clone)]
pub struct Trained {
    pub model: Model,
    pub epoch_losses: Vec<f64>,
}

/// All owners' rows, concatenated in owner order, with the ones column.
pub fn stack_rows(owners: &[OwnerData]) -> Result<(Array2<f64>, Array2<f64>)> {
    let xs: Vec<_> = owners.iter().map(|o| o.features.view()).collect();
    let ys: Vec<_> = owners.iter().map(|o| o.labels.view()).collect();
    let x = ndarray::concatenate(Axis(0), &xs)?.mapv(f64::from);
    let ones = Array2::<f64>::ones((x.nrows(), 1));
    let x1 = ndarray::concatenate(Axis(1), &[x.view(), ones.view()])?;
    Ok((x1, ndarray::concatenate(Axis(0), &ys)?.mapv(f64::from)))
}

/// The reference: the same SGD in f64 with the exact sigmoid.
pub fn train_plaintext(
    spec: &TrainSpec,
    owners: &[OwnerData],
    mut on_epoch: impl FnMut(usize, f64),
) -> Result<Trained> {
    let (x, y) = stack_rows(owners)?;
    let k = spec.outputs;
    let mut w = Array2::<f64>::zeros((x.ncols(), k));
    let mut losses = Vec::with_capacity(spec.epochs);
    let per_epoch = spec.steps_per_epoch();
    let mut loss_sum = 0.0;
    for (t, rows) in spec.steps() {
        let xb = x.select(Axis(0), &rows);
        let yb = y.select(Axis(0), &rows);
        let z = xb.dot(&w);
        loss_sum +=
            ndarray::Zip::from(&z).and(&yb).fold(0.0, |acc, &z, &y| acc + crate::kernels::float::softplus(z) - y * z);
        let r = z.mapv(sigmoid) - &yb;
        let g = xb.t().dot(&r);
        w.scaled_add(-spec.learning_rate / rows.len() as f64, &g);
        if (t + 1) % per_epoch == 0 {
            let loss = loss_sum / (spec.rows() * k) as f64;
            on_epoch(losses.len(), loss);
            losses.push(loss);
            loss_sum = 0.0;
        }
    }
    Ok(Trained { model: Model::from_extended(&w), epoch_losses: losses })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rows: usize, batch: usize) -> TrainSpec {
        TrainSpec {
            owners: vec![rows],
            features: 3,
            outputs: 1,
            epochs: 2,
            batch_size: batch,
            learning_rate: 0.5,
            feature_bound: 32.0,
            shuffle: None,
            frac_bits: 16,
            held: Vec::new(),
            comparison: Default::default(),
        }
    }

    #[test]
    fn batches_cover_every_row_once_per_epoch() {
        let mut s = spec(10, 4);
        let all = |s: &TrainSpec| s.steps().map(|(_, rows)| rows).collect::<Vec<_>>();
        let epoch = vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]];
        assert_eq!(all(&s), [epoch.clone(), epoch].concat());
        assert_eq!(s.steps().map(|(t, _)| t).collect::<Vec<_>>(), (0..6).collect::<Vec<_>>());
        s.shuffle = Some([7; 32]);
        let b = all(&s);
        assert_eq!(b.len(), 6);
        for epoch in b.chunks(3) {
            let mut rows: Vec<usize> = epoch.concat();
            assert_ne!(rows, (0..10).collect::<Vec<_>>(), "shuffled");
            rows.sort();
            assert_eq!(rows, (0..10).collect::<Vec<_>>());
        }
        assert_ne!(b[0], b[3], "each epoch has its own order");
        assert_eq!(b, all(&s), "every party derives the same order");
    }

    fn owner(labels: ndarray::ArrayD<f32>) -> OwnerFiles {
        let n = labels.shape()[0];
        OwnerFiles {
            features_path: "x.npy".into(),
            labels_path: format!("y{n}.npy").into(),
            features: Array2::zeros((n, 2)),
            labels,
        }
    }

    fn ids(v: &[f32]) -> ndarray::ArrayD<f32> {
        ndarray::ArrayD::from_shape_vec(vec![v.len()], v.to_vec()).unwrap()
    }

    #[test]
    fn labels_agree_on_the_classes() {
        // 0/1 labels: one output, the labels themselves.
        let (o, k) = encode_labels(vec![owner(ids(&[0.0, 1.0, 1.0]))], None).unwrap();
        assert_eq!((k, o[0].labels.column(0).to_vec()), (1, vec![0.0, 1.0, 1.0]));
        // --classes 2 turns 0/1 into two one-vs-rest outputs.
        let (o, k) = encode_labels(vec![owner(ids(&[0.0, 1.0]))], Some(2)).unwrap();
        assert_eq!((k, o[0].labels.clone()), (2, ndarray::array![[1.0, 0.0], [0.0, 1.0]]));
        // Class ids of one owner and one-hot rows of another: k from the one-hot width.
        let hot = ndarray::array![[0.0f32, 0.0, 1.0]].into_dyn();
        let (o, k) = encode_labels(vec![owner(ids(&[1.0, 0.0])), owner(hot)], None).unwrap();
        assert_eq!(k, 3);
        assert_eq!(o[0].labels, ndarray::array![[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]);
        assert_eq!(o[1].labels, ndarray::array![[0.0, 0.0, 1.0]]);
        // Class ids alone: the largest + 1; one beyond --classes is refused, naming it.
        assert_eq!(encode_labels(vec![owner(ids(&[4.0, 0.0]))], None).unwrap().1, 5);
        let e = encode_labels(vec![owner(ids(&[4.0, 0.0]))], Some(3)).unwrap_err().to_string();
        assert!(e.contains("y2.npy") && e.contains("row 0 is class 4"), "{e}");
        let e = encode_labels(vec![owner(ids(&[-1.0]))], None).unwrap_err().to_string();
        assert!(e.contains("row 0 is -1"), "{e}");
        let hot4 = ndarray::array![[0.0f32, 0.0, 0.0, 1.0]].into_dyn();
        let e = encode_labels(vec![owner(hot4), owner(ndarray::array![[1.0f32, 0.0]].into_dyn())], None).unwrap_err();
        assert!(e.to_string().contains("one-hot rows of 2 columns, but there are 4 classes"), "{e}");
    }

    #[test]
    fn a_spec_from_the_network_cannot_overflow_or_ask_for_too_much() {
        let ok = spec(100, 32);
        assert!(ok.check().is_ok());
        for bad in [
            TrainSpec { owners: vec![usize::MAX, 2], ..ok.clone() },
            TrainSpec { owners: vec![1 << 40], ..ok.clone() },
            TrainSpec { features: usize::MAX, ..ok.clone() },
            TrainSpec { outputs: 1 << 40, ..ok.clone() },
            TrainSpec { batch_size: usize::MAX, ..ok.clone() },
            TrainSpec { epochs: usize::MAX, ..ok.clone() },
        ] {
            let e = bad.check().unwrap_err().to_string();
            assert!(e.contains("too large") || e.contains("too many steps"), "{e}");
        }
        let info = DatasetInfo { rows: usize::MAX, features: 2, outputs: 1, frac_bits: 16, feature_bound: 32.0 };
        assert!(info.check().unwrap_err().to_string().contains("too large"));
    }

    #[test]
    fn update_bits_keep_the_update_in_range_and_precise() {
        let s = spec(100, 32);
        let p = s.update_bits().unwrap();
        // lr·R·1.01 = 16.16: 61 − 32 − 4.01 → 24 bits.
        assert_eq!(p, 24);
        assert_eq!(s.update_factor(32, p), (0.5 / 32.0 * 2f64.powi(24)).round() as u64);
        let huge = TrainSpec { learning_rate: 1e9, ..s.clone() };
        assert!(huge.update_bits().is_err());
        let tiny = TrainSpec { learning_rate: 1e-12, ..s };
        assert!(tiny.update_bits().is_err());
    }

    /// A spec from the network goes through the same check: f + P > 62 is refused.
    #[test]
    fn a_spec_whose_update_truncation_exceeds_62_bits_is_refused() {
        let s = TrainSpec { learning_rate: 5.3e-9, batch_size: 1, feature_bound: 1.0, frac_bits: 24, ..spec(600, 1) };
        let e = format!("{:#}", s.check().unwrap_err());
        assert!(e.contains("62 bits") && e.contains("--frac-bits 24"), "{e}");
        // Where it fits, P never takes the truncation past 62 bits.
        for frac_bits in 8..=30 {
            for lr in [1e-9, 5.3e-9, 1e-6, 1e-3, 0.5] {
                if let Ok(p) = (TrainSpec { learning_rate: lr, frac_bits, ..s.clone() }).update_bits() {
                    assert!(frac_bits + p <= 62, "f {frac_bits} + P {p} with lr {lr}");
                }
            }
        }
    }
}
