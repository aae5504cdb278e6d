//! Neural-network ops: convolution, pooling, activations, batch normalisation.

use anyhow::Result;

use super::expect_inputs;
use crate::error::Error;
use crate::import::{Ctx, Slot};
use crate::kernels::{Padding, Window};
use crate::plan::Op;
use crate::tensor::Tensor;
use crate::tfpb::{NodeDef, NodeExt};

/// tfe-run computes in NHWC, TensorFlow's default layout.
fn check_nhwc(node: &NodeDef) -> Result<()> {
    let format = node.get_attr_str("data_format", "NHWC")?;
    if format != "NHWC" {
        return Err(Error::unsupported(format!(
            "{}: data_format {format} is not supported (only NHWC)",
            node.describe()
        )));
    }
    Ok(())
}

fn padding(node: &NodeDef) -> Result<Padding> {
    match node.get_attr_str("padding", "")?.as_str() {
        "SAME" => Ok(Padding::Same),
        "VALID" => Ok(Padding::Valid),
        other => {
            Err(Error::unsupported(format!("{}: padding `{other}` is not supported (SAME or VALID)", node.describe())))
        }
    }
}

/// The spatial pair of an NHWC `[1, h, w, 1]` attribute such as strides.
fn spatial(node: &NodeDef, attr: &str, default: Option<[usize; 2]>) -> Result<[usize; 2]> {
    let v = match (node.get_attr_opt_ints(attr)?, default) {
        (Some(v), _) => v,
        (None, Some(d)) => return Ok(d),
        (None, None) => return Err(node.attr_error(attr, "is missing")),
    };
    match v.as_slice() {
        [1, h, w, 1] if *h > 0 && *w > 0 => Ok([*h as usize, *w as usize]),
        _ => Err(Error::unsupported(format!(
            "{}: {attr} {v:?} is not supported (must be [1, h, w, 1] with positive h, w)",
            node.describe()
        ))),
    }
}

pub fn conv2d(ctx: &mut Ctx, node: &NodeDef, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let window = conv_window(ctx, node, ins)?;
    Ok(vec![ctx.apply(node, Op::Conv2D(window), ins)?])
}

/// Same attributes as Conv2D; the filter is [kh, kw, channels, multiplier].
pub fn depthwise_conv2d(ctx: &mut Ctx, node: &NodeDef, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let window = conv_window(ctx, node, ins)?;
    Ok(vec![ctx.apply(node, crate::ops::DepthwiseConv2D { window }.into(), ins)?])
}

/// The window of a convolution node over inputs (data, filter).
fn conv_window(ctx: &Ctx, node: &NodeDef, ins: &[Slot; 2]) -> Result<Window> {
    check_nhwc(node)?;
    // The kernel size comes from the filter's shape when the op is applied.
    let window = Window {
        kernel: [1, 1],
        strides: spatial(node, "strides", None)?,
        dilations: spatial(node, "dilations", Some([1, 1]))?,
        padding: padding(node)?,
    };
    let f = ctx.shape(&ins[1]);
    Ok(Window { kernel: [f.first().copied().unwrap_or(1), f.get(1).copied().unwrap_or(1)], ..window })
}

fn pool_window(node: &NodeDef) -> Result<Window> {
    check_nhwc(node)?;
    Ok(Window {
        kernel: spatial(node, "ksize", None)?,
        strides: spatial(node, "strides", None)?,
        dilations: [1, 1],
        padding: padding(node)?,
    })
}

pub fn avg_pool(ctx: &mut Ctx, node: &NodeDef, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    Ok(vec![ctx.apply(node, Op::AvgPool(pool_window(node)?), ins)?])
}

pub fn max_pool(ctx: &mut Ctx, node: &NodeDef, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    Ok(vec![ctx.apply(node, Op::MaxPool(pool_window(node)?), ins)?])
}

pub fn relu(ctx: &mut Ctx, node: &NodeDef, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    Ok(vec![ctx.apply(node, Op::Relu, ins)?])
}

pub fn relu6(ctx: &mut Ctx, node: &NodeDef, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    Ok(vec![ctx.apply(node, crate::ops::Relu6.into(), ins)?])
}

/// TensorFlow's default slope is 0.2 (Keras 3's LeakyReLU layer writes its own 0.3).
pub fn leaky_relu(ctx: &mut Ctx, node: &NodeDef, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    let alpha = node.get_attr_float("alpha", 0.2)?;
    Ok(vec![ctx.apply(node, crate::ops::LeakyRelu { alpha }.into(), ins)?])
}

pub fn softmax(ctx: &mut Ctx, node: &NodeDef, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    Ok(vec![ctx.apply(node, Op::Softmax, ins)?])
}

/// BiasAdd is an Add whose bias matches the channel (last) axis.
pub fn bias_add(ctx: &mut Ctx, node: &NodeDef, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    check_nhwc(node)?;
    let (x, b) = (ctx.shape(&ins[0]), ctx.shape(&ins[1]));
    if b.len() != 1 || x.last() != b.first() {
        return Err(Error::unsupported(format!(
            "{}: bias of shape {b:?} does not match the last axis of input {x:?}",
            node.describe()
        )));
    }
    Ok(vec![ctx.apply(node, Op::Add, ins)?])
}

/// Inference-mode batch normalisation, folded at import into a per-channel affine
/// map `x * scale' + offset'` with `scale' = scale / sqrt(variance + epsilon)` and
/// `offset' = offset - mean * scale'`: the model owner computes both in the clear
/// and shares them as weights, so the servers do one product and one sum.
pub fn fused_batch_norm(ctx: &mut Ctx, node: &NodeDef, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<5>(node, ins)?;
    check_nhwc(node)?;
    if node.get_attr_bool("is_training", true)? {
        return Err(Error::unsupported(format!(
            "{}: is_training is true; freeze the model in inference mode",
            node.describe()
        )));
    }
    let epsilon = node.get_attr_float("epsilon", 1e-4)?;
    let channels = ctx.shape(&ins[0]).last().copied().unwrap_or(0);
    let names = ["scale", "offset", "mean", "variance"];
    let mut params = Vec::with_capacity(4);
    for (slot, what) in ins[1..].iter().zip(names) {
        let p = ctx.known_floats(node, slot, what)?;
        if p.shape() != [channels] {
            return Err(Error::unsupported(format!(
                "{}: {what} has shape {:?}, the input has {channels} channels",
                node.describe(),
                p.shape()
            )));
        }
        params.push(p);
    }
    let [scale, offset, mean, variance] = <[_; 4]>::try_from(params)
        .map_err(|_| Error::invalid_model(format!("{}: expects four parameters", node.describe())))?;
    let (scale, offset, mean, variance) = (&scale, &offset, &mean, &variance);
    let folded_scale = scale / &variance.mapv(|v| (v + epsilon).sqrt());
    let folded_offset = offset - &(mean * &folded_scale);
    let scale_slot = named_known(node, "scale", folded_scale);
    let offset_slot = named_known(node, "offset", folded_offset);
    let scaled = ctx.apply(node, Op::Mul, &[ins[0].clone(), scale_slot])?;
    let out = ctx.apply(node, Op::Add, &[scaled, offset_slot])?;
    // y, batch_mean, batch_variance and reserve spaces: only y exists at inference.
    Ok(vec![out, Slot::Unavailable, Slot::Unavailable, Slot::Unavailable, Slot::Unavailable, Slot::Unavailable])
}

fn named_known(node: &NodeDef, suffix: &str, value: ndarray::ArrayD<f32>) -> Slot {
    Slot::Known(std::rc::Rc::new(crate::import::Known {
        tensor: Tensor::Float(value),
        origin: format!("{}/folded_{suffix}", node.name),
    }))
}
