//! What to do about an input file that does not fit its placeholder: the shape
//! error says how to fix the array (add a batch axis, reshape, transpose), and
//! integers fed to a float placeholder, used as they are, get a warning.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use ndarray::ArrayD;

use crate::error::Error;
use crate::frontend::{Dim, Feed, Placeholder, Report};

/// Refuse, with the fix, a feed whose shape its placeholder does not accept.
/// The frontend refuses it as well (`Report::check_feeds`, with the same
/// `accepts`); this runs first because only here is the feed a numpy array the
/// user can reshape.
pub fn check_shapes(report: &Report, feeds: &BTreeMap<String, Feed>) -> Result<()> {
    for p in report.placeholders.iter().filter(|p| p.feedable) {
        let (Some(feed), Some(dims)) = (feeds.get(&p.name), &p.shape) else { continue };
        if p.accepts(&feed.shape) {
            continue;
        }
        let mut reason = format!(
            "`{}` has shape {:?}, but placeholder `{}` expects {}",
            feed.source,
            feed.shape,
            p.name,
            p.shape_text()
        );
        if let Some(fix) = shape_fix(dims, &feed.shape) {
            reason.push_str("; ");
            reason.push_str(&fix);
        }
        return Err(Error::bad_input(reason));
    }
    Ok(())
}

/// How to turn an array of shape `got` into one `dims` accepts, in numpy, when
/// there is one obvious way.
pub fn shape_fix(dims: &[Dim], got: &[usize]) -> Option<String> {
    let fits = |dims: &[Dim], shape: &[usize]| {
        dims.len() == shape.len() && dims.iter().zip(shape).all(|(d, &s)| d.is_none_or(|d| d == s))
    };
    let (batch, rest) = dims.split_first()?;
    // One example without its batch axis.
    if fits(rest, got) {
        let shape = std::iter::once(1).chain(got.iter().copied()).collect::<Vec<_>>();
        let more = match batch {
            Some(b) if *b > 1 => format!(" (the model takes exactly {b} rows at a time)"),
            _ => String::new(),
        };
        return Some(format!(
            "the file lacks the batch axis: add it with `x = np.expand_dims(x, 0)` (shape {shape:?}){more}"
        ));
    }
    // The right rows, but not a whole number of the model's fixed batches.
    if let (Some(b), Some((&rows, got_rest))) = (batch, got.split_first())
        && fits(rest, got_rest)
    {
        return Some(format!("the model takes exactly {b} rows at a time: give a multiple of {b} rows, not {rows}"));
    }
    let known: Option<Vec<usize>> = rest.iter().copied().collect();
    let known = known?;
    // Channels first where the model takes them last (or the other way round).
    if got.len() == dims.len() && got.len() >= 3 && batch.is_none_or(|b| Some(&b) == got.first()) {
        let n = got.len();
        let left: Vec<usize> = std::iter::once(0).chain(2..n).chain(std::iter::once(1)).collect();
        let right: Vec<usize> = std::iter::once(0).chain(std::iter::once(n - 1)).chain(1..n - 1).collect();
        for (perm, what) in [(left, "channels last"), (right, "channels first")] {
            let moved: Vec<usize> = perm.iter().filter_map(|&a| got.get(a).copied()).collect();
            if moved.get(1..) == Some(&known[..]) {
                let axes = perm.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
                return Some(format!(
                    "the model takes {what}: transpose it with `x = np.transpose(x, ({axes}))` (not a reshape, \
                     which would mix the values up)"
                ));
            }
        }
    }
    // The right number of values per row, in another shape (flattened images).
    let per_row: usize = known.iter().product();
    let total: usize = got.iter().product();
    if per_row > 0 && total > 0 && total.is_multiple_of(per_row) {
        let rows = total / per_row;
        let batch_ok = batch.is_none_or(|b| b > 0 && rows.is_multiple_of(b));
        let dims_text = known.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
        if batch_ok {
            return Some(format!(
                "it holds {rows} row(s) of {per_row} values: if they are in the model's order, reshape it with \
                 `x = x.reshape(-1, {dims_text})`"
            ));
        }
    }
    None
}

/// Integers fed to a float placeholder are used as they are: 0-255 pixels
/// stay 0-255, where a model trained on [0, 1] (or [-1, 1]) inputs predicts
/// nonsense without an error. Warn, since scaling is the user's to decide.
pub fn warn_unscaled(placeholder: Option<&Placeholder>, path: &Path, file_dtype: &str, array: &ArrayD<f32>) {
    let Some(p) = placeholder else { return };
    let float = p.dtype.is_some_and(|d| d.starts_with("float") || d == "half" || d == "bfloat16");
    let integer = file_dtype.starts_with("int") || file_dtype.starts_with("uint");
    let largest = array.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if float && integer && largest > 1.0 {
        super::ui::warning(format_args!(
            "`{}` holds {file_dtype} values (up to {largest}) for {} placeholder `{}`: they are used as they \
             are, not scaled; if the model was trained on scaled inputs, scale them first (e.g. \
             `x.astype(np.float32) / 255`)",
            path.display(),
            p.dtype_name(),
            p.name
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::shape_fix;

    fn fix(dims: &[Option<usize>], got: &[usize]) -> String {
        shape_fix(dims, got).unwrap_or_default()
    }

    #[test]
    fn says_how_to_fix_a_shape() {
        let mnist = [None, Some(28), Some(28), Some(1)];
        assert!(fix(&mnist, &[28, 28, 1]).contains("np.expand_dims(x, 0)"));
        assert!(fix(&mnist, &[5, 784]).contains("x.reshape(-1, 28, 28, 1)"));
        assert!(fix(&mnist, &[784]).contains("1 row(s) of 784 values"));
        let rgb = [None, Some(32), Some(32), Some(3)];
        assert!(fix(&rgb, &[4, 3, 32, 32]).contains("np.transpose(x, (0, 2, 3, 1))"), "{}", fix(&rgb, &[4, 3, 32, 32]));
        let nchw = [None, Some(3), Some(32), Some(32)];
        assert!(fix(&nchw, &[4, 32, 32, 3]).contains("np.transpose(x, (0, 3, 1, 2))"));
        let fixed = [Some(2), Some(4)];
        assert!(fix(&fixed, &[3, 4]).contains("a multiple of 2 rows, not 3"));
        assert!(fix(&fixed, &[4]).contains("exactly 2 rows at a time"));
        // Nothing obvious: no advice rather than a wrong one.
        assert_eq!(shape_fix(&mnist, &[5, 100]), None);
        assert_eq!(shape_fix(&[None, None], &[3, 4, 5]), None);
    }
}
