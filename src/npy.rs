//! `.npy` files: the client's inputs, and `--out`.
//!
//! Inputs are converted to f32, the precision of the placeholders tfe-run feeds:
//! float64 inputs (tf-encrypted's own examples ship them for float32 placeholders)
//! and integer arrays are accepted, NaN and infinities are not.

// Parses bytes from others: nothing here may panic on what they send.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use npyz::{DType, NpyFile, Order, TypeChar, WriterBuilder};

use crate::error::Error;

/// Read an input array as f32.
pub fn read_input(path: &Path) -> Result<ArrayD<f32>> {
    read_input_typed(path).map(|(array, _)| array)
}

/// Read an input array as f32, with the dtype the file stores as numpy names
/// it (`uint8`, `float64`): integers fed to a float model are worth a warning.
pub fn read_input_typed(path: &Path) -> Result<(ArrayD<f32>, &'static str)> {
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| Error::bad_input(format!("cannot read input `{name}`: {e}")))?;
    parse_input_typed(&bytes, &name.to_string())
}

/// Where an input array comes from: a `.npy` file, or the bytes of one already
/// in memory (a NumPy array handed over by the Python package), named `name` in
/// messages. Both are read by [`parse_input_typed`]: the same checks, the same
/// messages.
#[derive(Debug, Clone)]
pub enum Input {
    File(PathBuf),
    Bytes { name: String, bytes: Vec<u8> },
}

impl Input {
    /// The array as f32, with the dtype it was stored as.
    pub fn read_typed(&self) -> Result<(ArrayD<f32>, &'static str)> {
        match self {
            Input::File(path) => read_input_typed(path),
            Input::Bytes { name, bytes } => parse_input_typed(bytes, name),
        }
    }

    /// The array as f32.
    pub fn read(&self) -> Result<ArrayD<f32>> {
        self.read_typed().map(|(array, _)| array)
    }

    /// How messages name it: the file as given, or the in-memory array's name.
    pub fn name(&self) -> String {
        match self {
            Input::File(path) => path.display().to_string(),
            Input::Bytes { name, .. } => name.clone(),
        }
    }
}

/// Parse the bytes of a `.npy` file as f32; `name` names it in errors.
pub fn parse_input(bytes: &[u8], name: &str) -> Result<ArrayD<f32>> {
    parse_input_typed(bytes, name).map(|(array, _)| array)
}

/// [`parse_input`], with the file's dtype.
pub fn parse_input_typed(bytes: &[u8], name: &str) -> Result<(ArrayD<f32>, &'static str)> {
    let bad = |why: String| Error::bad_input(format!("input `{name}`: {why}"));
    check_header_length(bytes).map_err(bad)?;
    let npy = NpyFile::new(bytes).map_err(|e| bad(format!("not a .npy file ({e})")))?;
    let DType::Plain(ty) = npy.dtype() else {
        return Err(bad("structured arrays are not supported; save a plain numeric array".into()));
    };
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("dimension {d} is too large"))))
        .collect::<Result<_>>()?;
    let count = crate::tensor::element_count(&shape).ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
    // Compare the declared size with the bytes present before reading anything, so
    // a lying header cannot make us allocate more than the file holds.
    let item = ty.num_bytes().unwrap_or(0);
    if count.checked_mul(item).is_none_or(|n| n > bytes.len()) {
        return Err(bad(format!("the file is truncated: shape {shape:?} needs {count} values of {item} bytes")));
    }
    let order = npy.order();
    let dtype = match (ty.type_char(), item) {
        (TypeChar::Float, 2) => "float16",
        (TypeChar::Float, 4) => "float32",
        (TypeChar::Float, 8) => "float64",
        (TypeChar::Int, 1) => "int8",
        (TypeChar::Int, 2) => "int16",
        (TypeChar::Int, 4) => "int32",
        (TypeChar::Int, 8) => "int64",
        (TypeChar::Uint, 1) => "uint8",
        (TypeChar::Uint, 2) => "uint16",
        (TypeChar::Uint, 4) => "uint32",
        (TypeChar::Uint, 8) => "uint64",
        (TypeChar::Bool, 1) => "bool",
        _ => "other",
    };
    let values: Vec<f64> = match (ty.type_char(), item) {
        (TypeChar::Float, 2) => npy.into_vec::<half::f16>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Float, 4) => npy.into_vec::<f32>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Float, 8) => npy.into_vec::<f64>(),
        (TypeChar::Int, 1) => npy.into_vec::<i8>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Int, 2) => npy.into_vec::<i16>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Int, 4) => npy.into_vec::<i32>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Int, 8) => npy.into_vec::<i64>().map(|v| v.into_iter().map(|x| x as f64).collect()),
        (TypeChar::Uint, 1) => npy.into_vec::<u8>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Uint, 2) => npy.into_vec::<u16>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Uint, 4) => npy.into_vec::<u32>().map(|v| v.into_iter().map(f64::from).collect()),
        (TypeChar::Uint, 8) => npy.into_vec::<u64>().map(|v| v.into_iter().map(|x| x as f64).collect()),
        (TypeChar::Bool, 1) => npy.into_vec::<bool>().map(|v| v.into_iter().map(|b| f64::from(u8::from(b))).collect()),
        (TypeChar::Object, _) => {
            return Err(bad("object (pickled) arrays are not supported; save a numeric array".into()));
        }
        _ => {
            return Err(bad(format!(
                "dtype `{ty}` is not supported (use float16, float32, float64 or an integer type)"
            )));
        }
    }
    .map_err(|e| bad(format!("cannot read the data ({e})")))?;
    if values.len() != count {
        return Err(bad(format!("the file is truncated: {} of {count} values", values.len())));
    }
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(bad(format!("value {v} at flat index {i} is not finite")));
    }
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| v.abs() > f64::from(f32::MAX)) {
        return Err(bad(format!("value {v} at flat index {i} does not fit in float32")));
    }
    let values: Vec<f32> = values.into_iter().map(|v| v as f32).collect();
    let array = match order {
        Order::C => ArrayD::from_shape_vec(IxDyn(&shape), values),
        Order::Fortran => ArrayD::from_shape_vec(IxDyn(&shape).f(), values),
    }
    .map_err(|e| bad(e.to_string()))?;
    Ok((array.as_standard_layout().into_owned(), dtype))
}

/// The header length a `.npy` file declares must fit in the file: npyz allocates
/// it before reading, so 12 bytes declaring a 4 GiB header (format 2 and 3 have a
/// 4-byte length) would cost 4 GiB (found by the `npy` fuzz target).
fn check_header_length(bytes: &[u8]) -> std::result::Result<(), String> {
    let (Some(b"\x93NUMPY"), Some(&major)) = (bytes.get(..6), bytes.get(6)) else {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    };
    let (start, declared) = match major {
        1 => (10, bytes.get(8..10).and_then(|l| l.try_into().ok()).map(|l| u16::from_le_bytes(l) as usize)),
        2 | 3 => (12, bytes.get(8..12).and_then(|l| l.try_into().ok()).map(|l| u32::from_le_bytes(l) as usize)),
        v => return Err(format!("not a .npy file this reader knows (format version {v})")),
    };
    match declared {
        Some(len) if len > MAX_HEADER => Err(format!("its header of {len} bytes is over the {MAX_HEADER}-byte limit")),
        // `start` bytes were read: the file has at least those.
        Some(len) if len <= bytes.len().saturating_sub(start) => {
            check_header_text(bytes.get(start..).and_then(|h| h.get(..len)).unwrap_or_default())
        }
        Some(len) => Err(format!("the file is truncated: its header says {len} bytes, the file has {}", bytes.len())),
        None => Err("the file is truncated inside its header".into()),
    }
}

/// numpy writes headers of a few hundred bytes.
const MAX_HEADER: usize = 1 << 16;

/// The header is a Python literal, parsed by a backtracking parser (py_literal)
/// whose time grows exponentially on some inputs: 12 nested braces took 2.6 s,
/// 40 unary plus signs before a number 1.4 s, a few more would hang (both found
/// by the `npy` fuzz target). So only what numpy writes reaches it: quoted
/// strings of dtype characters, `True`/`False`, unsigned integers,
/// punctuation, nested at most 4 deep (a dict, a structured
/// dtype's list, its field tuples, a sub-array shape).
fn check_header_text(header: &[u8]) -> std::result::Result<(), String> {
    const MAX_DEPTH: usize = 4;
    let unusual = |what: &str| Err(format!("not a .npy file (its header has {what}, which numpy does not write)"));
    let mut depth = 0usize;
    let mut rest = header;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'{' | b'[' | b'(' => {
                depth = depth.saturating_add(1);
                if depth > MAX_DEPTH {
                    return Err(format!("not a .npy file (its header nests more than {MAX_DEPTH} deep)"));
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            b',' | b':' | b' ' | b'\n' | b'\t' | b'\r' | b'\0' => {}
            b'\'' => {
                // A string: dtype codes and field names.
                let end = rest.iter().position(|&c| c == b'\'').unwrap_or(rest.len());
                let (text, after) = rest.split_at(end);
                if after.is_empty() {
                    return unusual("an unterminated string");
                }
                if !text.iter().all(|c| c.is_ascii_alphanumeric() || b"<>|=_ .-".contains(c)) {
                    return unusual("a string with unusual characters");
                }
                rest = after.get(1..).unwrap_or_default();
            }
            b'0'..=b'9' => {
                let end = rest.iter().position(|c| !c.is_ascii_digit()).unwrap_or(rest.len());
                rest = rest.get(end..).unwrap_or_default();
            }
            b'T' | b'F' => {
                let word = if b == b'T' { &b"rue"[..] } else { &b"alse"[..] };
                match rest.strip_prefix(word) {
                    Some(tail) => rest = tail,
                    None => return unusual("a bare word"),
                }
            }
            _ => return unusual(&format!("the character {:?}", char::from(b))),
        }
    }
    Ok(())
}

/// Write a float32 array.
pub fn write_f32(path: &Path, array: &ArrayD<f32>) -> Result<()> {
    let shape: Vec<u64> = array.shape().iter().map(|&d| d as u64).collect();
    let write = || -> std::io::Result<()> {
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut w = npyz::WriteOptions::<f32>::new().default_dtype().shape(&shape).writer(file).begin_nd()?;
        w.extend(array.iter().copied())?;
        w.finish()
    };
    write().with_context(|| format!("cannot write `{}`", path.display()))
}
