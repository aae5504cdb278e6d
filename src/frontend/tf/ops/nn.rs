//! Neural-network ops: convolution, pooling, activations, batch normalisation.

use anyhow::Result;
use ndarray::ArrayD;

use super::super::Node;
use super::expect_inputs;
use crate::error::Error;
use crate::frontend::tf::proto::NodeExt;
use crate::frontend::{Builder, Slot};
use crate::kernels::{Layout, Padding, Window};
use crate::plan::Op;
use crate::tensor::Tensor;

/// The layout of a window op: TensorFlow's default NHWC, or NCHW.
fn layout(node: &Node<'_>) -> Result<Layout> {
    match node.get_attr_str("data_format", "NHWC")?.as_str() {
        "NHWC" => Ok(Layout::Nhwc),
        "NCHW" => Ok(Layout::Nchw),
        other => {
            Err(Error::unsupported(format!("{}: data_format {other} is not supported (NHWC or NCHW)", node.describe())))
        }
    }
}

/// Ops computed in NHWC only.
fn check_nhwc(node: &Node<'_>) -> Result<()> {
    let format = node.get_attr_str("data_format", "NHWC")?;
    if format != "NHWC" {
        return Err(Error::unsupported(format!(
            "{}: data_format {format} is not supported (only NHWC)",
            node.describe()
        )));
    }
    Ok(())
}

/// The `padding` attribute; `EXPLICIT` (Conv2D, MaxPool) reads `explicit_paddings`.
fn padding(node: &Node<'_>, layout: Layout, explicit: bool) -> Result<Padding> {
    match node.get_attr_str("padding", "")?.as_str() {
        "SAME" => Ok(Padding::Same),
        "VALID" => Ok(Padding::Valid),
        "EXPLICIT" if explicit => explicit_paddings(node, layout),
        other => Err(Error::unsupported(format!(
            "{}: padding `{other}` is not supported ({})",
            node.describe(),
            if explicit { "SAME, VALID or EXPLICIT" } else { "SAME or VALID" }
        ))),
    }
}

/// TensorFlow's `explicit_paddings`: 8 integers, a (before, after) pair for each
/// dimension in `data_format` order, 0 for the batch and the channels.
fn explicit_paddings(node: &Node<'_>, layout: Layout) -> Result<Padding> {
    let v = node.get_attr_ints("explicit_paddings")?;
    let fail = || {
        Error::unsupported(format!(
            "{}: explicit_paddings {v:?} are not supported (8 non-negative integers, 0 for the batch and the channels)",
            node.describe()
        ))
    };
    let pads: Vec<usize> = v.iter().map(|&p| usize::try_from(p)).collect::<Result<_, _>>().map_err(|_| fail())?;
    let pairs: Vec<[usize; 2]> = pads.chunks_exact(2).filter_map(|c| <[usize; 2]>::try_from(c).ok()).collect();
    let [n, h, w, c] = match pairs.as_slice() {
        &[a, b, c, d] => match layout {
            Layout::Nhwc => [a, b, c, d],
            Layout::Nchw => [a, c, d, b],
        },
        _ => return Err(fail()),
    };
    if n != [0, 0] || c != [0, 0] {
        return Err(fail());
    }
    Ok(Padding::Explicit([h, w]))
}

/// The spatial pair of a `[1, h, w, 1]` (NHWC) or `[1, 1, h, w]` (NCHW) attribute
/// such as strides.
fn spatial(node: &Node<'_>, attr: &str, default: Option<[usize; 2]>, layout: Layout) -> Result<[usize; 2]> {
    let v = match (node.get_attr_opt_ints(attr)?, default) {
        (Some(v), _) => v,
        (None, Some(d)) => return Ok(d),
        (None, None) => return Err(node.attr_error(attr, "is missing")),
    };
    let hw = match (layout, v.as_slice()) {
        (Layout::Nhwc, &[1, h, w, 1]) | (Layout::Nchw, &[1, 1, h, w]) => {
            usize::try_from(h).ok().zip(usize::try_from(w).ok()).filter(|&(h, w)| h > 0 && w > 0)
        }
        _ => None,
    };
    hw.map(|(h, w)| [h, w]).ok_or_else(|| {
        let form = match layout {
            Layout::Nhwc => "[1, h, w, 1]",
            Layout::Nchw => "[1, 1, h, w]",
        };
        Error::unsupported(format!(
            "{}: {attr} {v:?} is not supported (must be {form} with positive h, w)",
            node.describe()
        ))
    })
}

pub fn conv2d(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let window = conv_window(ctx, node, ins)?;
    Ok(vec![ctx.apply(&node.origin, Op::Conv2D(window), ins)?])
}

/// Conv2DBackpropInput(input_sizes, filter, out_backprop) with known
/// `input_sizes`: a transposed convolution (Keras's Conv2DTranspose) of the
/// private `out_backprop` by the filter [kh, kw, out, in]. NHWC only.
pub fn conv2d_backprop_input(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let [sizes, filter, y] = expect_inputs::<3>(node, ins)?;
    check_nhwc(node)?;
    let sizes = super::known_sizes(ctx, node, sizes, "input_sizes")?;
    let window = conv_window(ctx, node, &[y.clone(), filter.clone()])?;
    let (ys, fs) = (ctx.shape(y), ctx.shape(filter));
    let &[n, h, w, c] = sizes.as_slice() else {
        return Err(Error::unsupported(format!("{}: input_sizes {sizes:?} is not NHWC", node.describe())));
    };
    if ys.first() != Some(&n) || fs.get(2) != Some(&c) {
        return Err(Error::unsupported(format!(
            "{}: input_sizes {sizes:?} do not fit the input {ys:?} and the filter {fs:?}",
            node.describe()
        )));
    }
    let unit = crate::ops::Conv2DTranspose { window, out_hw: [h, w] };
    Ok(vec![ctx.apply(&node.origin, unit.into(), &[y.clone(), filter.clone()])?])
}

/// Conv2D's attributes; the filter is [kh, kw, channels, multiplier]. NHWC only
/// (TensorFlow's CPU kernel is NHWC only too).
pub fn depthwise_conv2d(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    check_nhwc(node)?;
    let window = conv_window(ctx, node, ins)?;
    Ok(vec![ctx.apply(&node.origin, crate::ops::DepthwiseConv2D { window }.into(), ins)?])
}

/// The window of a convolution node over (data, filter).
fn conv_window(ctx: &Builder, node: &Node<'_>, ins: &[Slot; 2]) -> Result<Window> {
    let layout = layout(node)?;
    // The kernel size comes from the filter's shape (HWIO, or HW·channels·multiplier).
    let f = ctx.shape(&ins[1]);
    Ok(Window {
        kernel: [f.first().copied().unwrap_or(1), f.get(1).copied().unwrap_or(1)],
        strides: spatial(node, "strides", None, layout)?,
        dilations: spatial(node, "dilations", Some([1, 1]), layout)?,
        padding: padding(node, layout, true)?,
        layout,
    })
}

fn pool_window(node: &Node<'_>, explicit: bool) -> Result<Window> {
    let layout = layout(node)?;
    Ok(Window {
        kernel: spatial(node, "ksize", None, layout)?,
        strides: spatial(node, "strides", None, layout)?,
        dilations: [1, 1],
        padding: padding(node, layout, explicit)?,
        layout,
    })
}

pub fn avg_pool(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    // TensorFlow's AvgPool has no EXPLICIT padding.
    Ok(vec![ctx.apply(&node.origin, Op::AvgPool(pool_window(node, false)?), ins)?])
}

pub fn max_pool(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    Ok(vec![ctx.apply(&node.origin, Op::MaxPool(pool_window(node, true)?), ins)?])
}

pub fn relu(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    Ok(vec![ctx.apply(&node.origin, Op::Relu, ins)?])
}

pub fn relu6(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    Ok(vec![ctx.apply(&node.origin, crate::ops::Relu6.into(), ins)?])
}

/// TensorFlow's default slope is 0.2 (Keras 3's LeakyReLU layer writes its own 0.3).
pub fn leaky_relu(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    let alpha = node.get_attr_float("alpha", 0.2)?;
    Ok(vec![ctx.apply(&node.origin, crate::ops::LeakyRelu { alpha }.into(), ins)?])
}

/// The activations of one op each, under Pond the curve of the same name.
fn activation(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot], curve: crate::ops::Curve) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    Ok(vec![ctx.apply(&node.origin, crate::ops::Activation { curve }.into(), ins)?])
}

pub fn elu(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    activation(ctx, node, ins, crate::ops::Curve::Elu)
}

pub fn selu(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    activation(ctx, node, ins, crate::ops::Curve::Selu)
}

pub fn softplus(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    activation(ctx, node, ins, crate::ops::Curve::Softplus)
}

pub fn softsign(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    activation(ctx, node, ins, crate::ops::Curve::Softsign)
}

pub fn erf(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    activation(ctx, node, ins, crate::ops::Curve::Erf)
}

/// GELU's exact form (Keras 3 and tf_keras, `approximate=False`) exports
/// 0.5·x·erfc(−x/√2).
pub fn erfc(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    activation(ctx, node, ins, crate::ops::Curve::Erfc)
}

pub fn softmax(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<1>(node, ins)?;
    Ok(vec![ctx.apply(&node.origin, Op::Softmax, ins)?])
}

/// BiasAdd is an Add whose bias matches the channel axis: the last (NHWC), or
/// axis 1 (NCHW), where the bias is reshaped to `[c, 1, 1]` to broadcast.
pub fn bias_add(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<2>(node, ins)?;
    let layout = layout(node)?;
    let (x, b) = (ctx.shape(&ins[0]), ctx.shape(&ins[1]));
    let channels = match layout {
        Layout::Nhwc => x.last(),
        Layout::Nchw => x.get(1).filter(|_| x.len() >= 3),
    };
    if b.len() != 1 || channels != b.first() {
        return Err(Error::unsupported(format!(
            "{}: bias of shape {b:?} does not match the {} axis of input {x:?}",
            node.describe(),
            match layout {
                Layout::Nhwc => "last",
                Layout::Nchw => "channel",
            }
        )));
    }
    let bias = match layout {
        Layout::Nhwc => ins[1].clone(),
        Layout::Nchw => {
            let mut shape = vec![1; x.len().saturating_sub(1)];
            if let Some(first) = shape.first_mut() {
                *first = b.first().copied().unwrap_or(1);
            }
            ctx.apply(&node.origin, Op::Reshape(shape), &ins[1..])?
        }
    };
    Ok(vec![ctx.apply(&node.origin, Op::Add, &[ins[0].clone(), bias])?])
}

/// Inference-mode batch normalisation, folded at import into a per-channel affine
/// map `x * scale' + offset'` with `scale' = scale / sqrt(variance + epsilon)` and
/// `offset' = offset - mean * scale'`: the model owner computes both in the clear
/// and shares them as weights, so the servers do one product and one sum (after
/// a linear op, the product is folded into its filter: `frontend::fold`).
pub fn fused_batch_norm(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot]) -> Result<Vec<Slot>> {
    let ins = expect_inputs::<5>(node, ins)?;
    if node.get_attr_bool("is_training", true)? {
        return batch_norm_by_batch_statistics(ctx, node, ins);
    }
    check_nhwc(node)?;
    let epsilon = node.get_attr_float("epsilon", 1e-4)?;
    let channels = ctx.shape(&ins[0]).last().copied().unwrap_or(0);
    let names = ["scale", "offset", "mean", "variance"];
    let mut params = Vec::with_capacity(4);
    for (slot, what) in ins[1..].iter().zip(names) {
        let p = ctx.known_floats(&node.origin, slot, what)?;
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
    let (folded_scale, folded_offset) = fold_batch_norm(&scale, &offset, &mean, &variance, epsilon);
    let scale_slot = named_known(node, "scale", folded_scale);
    let offset_slot = named_known(node, "offset", folded_offset);
    let scaled = ctx.apply(&node.origin, Op::Mul, &[ins[0].clone(), scale_slot])?;
    let out = ctx.apply(&node.origin, Op::Add, &[scaled, offset_slot])?;
    // y, batch_mean, batch_variance and reserve spaces: only y exists at inference.
    Ok(vec![out, Slot::Unavailable, Slot::Unavailable, Slot::Unavailable, Slot::Unavailable, Slot::Unavailable])
}

/// Training-mode batch normalisation normalises by the batch's own statistics,
/// channel by channel: `(x − mean)·rsqrt(variance + epsilon)·scale + offset`
/// with the (biased) mean and variance over every axis but the channels'.
/// tf_keras' LayerNormalization writes itself so, on its input reshaped to
/// `[1, rows, features, 1]` in NCHW (each row a channel, scale 1 and offset 0,
/// skipped here). The statistics are private: Mean, a squared difference, Mean,
/// and a secure Rsqrt.
fn batch_norm_by_batch_statistics(ctx: &mut Builder, node: &Node<'_>, ins: &[Slot; 5]) -> Result<Vec<Slot>> {
    let shape = ctx.shape(&ins[0]);
    let channel_axis = match layout(node)? {
        Layout::Nhwc => 3,
        Layout::Nchw => 1,
    };
    let Some(&channels) = shape.get(channel_axis).filter(|_| shape.len() == 4) else {
        return Err(Error::unsupported(format!("{}: input {shape:?} is not 4-D", node.describe())));
    };
    let epsilon = node.get_attr_float("epsilon", 1e-4)?;
    let mut per_channel = [1usize; 4];
    if let Some(c) = per_channel.get_mut(channel_axis) {
        *c = channels;
    }
    let mut params = Vec::with_capacity(2);
    for (slot, what) in ins[1..3].iter().zip(["scale", "offset"]) {
        let p = ctx.known_floats(&node.origin, slot, what)?;
        if p.shape() != [channels] {
            return Err(Error::unsupported(format!(
                "{}: {what} has shape {:?}, the input has {channels} channels",
                node.describe(),
                p.shape()
            )));
        }
        params.push(p.into_shape_with_order(ndarray::IxDyn(&per_channel))?);
    }
    let axes: Vec<usize> = (0..4).filter(|&a| a != channel_axis).collect();
    let at = &node.origin;
    let mean = ctx.apply(at, Op::Mean { axes: axes.clone(), keep_dims: true }, &ins[..1])?;
    let centred = ctx.apply(at, Op::Sub, &[ins[0].clone(), mean])?;
    let squared = ctx.apply(at, Op::Mul, &[centred.clone(), centred.clone()])?;
    let variance = ctx.apply(at, Op::Mean { axes, keep_dims: true }, &[squared])?;
    let epsilon = named_known(node, "epsilon", ArrayD::from_elem(ndarray::IxDyn(&[]), epsilon));
    let shifted = ctx.apply(at, Op::Add, &[variance, epsilon])?;
    let inverse = ctx.apply(at, Op::Rsqrt, &[shifted])?;
    let mut out = ctx.apply(at, Op::Mul, &[centred, inverse])?;
    let [scale, offset] = <[_; 2]>::try_from(params)
        .map_err(|_| Error::invalid_model(format!("{}: expects a scale and an offset", node.describe())))?;
    if scale.iter().any(|&v| v != 1.0) {
        out = ctx.apply(at, Op::Mul, &[out, named_known(node, "scale", scale)])?;
    }
    if offset.iter().any(|&v| v != 0.0) {
        out = ctx.apply(at, Op::Add, &[out, named_known(node, "offset", offset)])?;
    }
    Ok(vec![out, Slot::Unavailable, Slot::Unavailable, Slot::Unavailable, Slot::Unavailable, Slot::Unavailable])
}

/// `scale / sqrt(variance + epsilon)` and `offset - mean * scale'`.
// The model's own statistics, in the clear (f32: no overflow to guard).
#[allow(clippy::arithmetic_side_effects)]
fn fold_batch_norm(
    scale: &ArrayD<f32>,
    offset: &ArrayD<f32>,
    mean: &ArrayD<f32>,
    variance: &ArrayD<f32>,
    epsilon: f32,
) -> (ArrayD<f32>, ArrayD<f32>) {
    let folded_scale = scale / &variance.mapv(|v| (v + epsilon).sqrt());
    let folded_offset = offset - &(mean * &folded_scale);
    (folded_scale, folded_offset)
}

fn named_known(node: &Node<'_>, suffix: &str, value: ArrayD<f32>) -> Slot {
    Slot::Known(std::rc::Rc::new(crate::frontend::Known {
        tensor: Tensor::Float(value),
        origin: format!("{}/folded_{suffix}", node.name),
    }))
}
