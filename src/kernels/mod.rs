//! Tensor kernels, each a small function that can be tested and benchmarked alone.
//!
//! `layout` and `linear` are generic over the element type: the plaintext executor
//! runs them on f32, and the secure run on ring elements (shares), since data
//! movement and linear maps commute with additive secret sharing. `float` holds the
//! non-linear functions that only make sense in the clear.

pub mod float;
pub mod layout;
pub mod linear;

/// Padding of a sliding window op (Conv2D, pools).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Padding {
    Valid,
    Same,
    /// Given pads, `[before, after]` for each spatial axis (height, then width),
    /// whatever the layout.
    Explicit([[usize; 2]; 2]),
}

/// The padding of one spatial axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AxisPadding {
    Valid,
    Same,
    Explicit([usize; 2]),
}

impl Padding {
    /// The padding of spatial axis `axis` (0: height, 1: width).
    pub fn axis(&self, axis: usize) -> AxisPadding {
        match self {
            Padding::Valid => AxisPadding::Valid,
            Padding::Same => AxisPadding::Same,
            Padding::Explicit(pads) => AxisPadding::Explicit(pads.get(axis).copied().unwrap_or([0, 0])),
        }
    }
}

/// The order of a window op's axes: batch, then channels last (TensorFlow's
/// default) or first (ONNX's, and TensorFlow's `data_format: NCHW`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Layout {
    #[default]
    Nhwc,
    Nchw,
}

impl Layout {
    /// `(batch, height, width, channels)` of a rank-4 shape in this layout.
    pub fn split(self, shape: &[usize]) -> Option<[usize; 4]> {
        match (self, shape) {
            (Layout::Nhwc, &[n, h, w, c]) | (Layout::Nchw, &[n, c, h, w]) => Some([n, h, w, c]),
            _ => None,
        }
    }

    /// The shape in this layout of `(batch, height, width, channels)`.
    pub fn join(self, [n, h, w, c]: [usize; 4]) -> Vec<usize> {
        match self {
            Layout::Nhwc => vec![n, h, w, c],
            Layout::Nchw => vec![n, c, h, w],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Layout::Nhwc => "NHWC",
            Layout::Nchw => "NCHW",
        }
    }
}

/// The output length and the padding before, for one spatial axis of a window op,
/// exactly as TensorFlow computes them (SAME puts the odd padding element after).
pub fn window_output(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    padding: AxisPadding,
) -> Option<(usize, usize)> {
    let effective = kernel.checked_sub(1)?.checked_mul(dilation)?.checked_add(1)?;
    if stride == 0 {
        return None;
    }
    match padding {
        AxisPadding::Valid => Some((input.checked_sub(effective)?.checked_div(stride)?.checked_add(1)?, 0)),
        AxisPadding::Same => {
            let out = input.div_ceil(stride);
            // A window from the network may be of any size: one whose padding
            // does not fit a usize does not fit the input.
            let reach = out.saturating_sub(1).checked_mul(stride)?.checked_add(effective)?;
            Some((out, reach.saturating_sub(input) / 2))
        }
        AxisPadding::Explicit([before, after]) => {
            let padded = input.checked_add(before)?.checked_add(after)?;
            Some((padded.checked_sub(effective)?.checked_div(stride)?.checked_add(1)?, before))
        }
    }
}

/// The geometry of a 2-D window op over a rank-4 tensor in `layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub padding: Padding,
    /// Absent in plans from before layouts: those are NHWC.
    #[serde(default)]
    pub layout: Layout,
}

/// Output height/width and top/left padding of `window` over an input of `hw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub out: [usize; 2],
    pub pad: [usize; 2],
}

impl Window {
    pub fn geometry(&self, hw: [usize; 2]) -> Option<Geometry> {
        let axis = |i: usize| {
            window_output(
                *hw.get(i)?,
                *self.kernel.get(i)?,
                *self.strides.get(i)?,
                *self.dilations.get(i)?,
                self.padding.axis(i),
            )
        };
        let (oh, pt) = axis(0)?;
        let (ow, pl) = axis(1)?;
        Some(Geometry { out: [oh, ow], pad: [pt, pl] })
    }

    /// The same window over NHWC data: what the kernels compute on after
    /// transposing an NCHW tensor.
    pub fn nhwc(&self) -> Window {
        Window { layout: Layout::Nhwc, ..*self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_output_matches_tensorflow() {
        // VALID: ceil((in - k + 1) / s)
        assert_eq!(window_output(28, 5, 1, 1, AxisPadding::Valid), Some((24, 0)));
        assert_eq!(window_output(7, 3, 2, 1, AxisPadding::Valid), Some((3, 0)));
        assert_eq!(window_output(2, 3, 1, 1, AxisPadding::Valid), None);
        // SAME: ceil(in / s), extra padding after
        assert_eq!(window_output(7, 3, 2, 1, AxisPadding::Same), Some((4, 1)));
        assert_eq!(window_output(8, 3, 2, 1, AxisPadding::Same), Some((4, 0)));
        assert_eq!(window_output(5, 2, 2, 1, AxisPadding::Same), Some((3, 0)));
        // dilation 2 turns a 3-tap kernel into an effective 5
        assert_eq!(window_output(9, 3, 1, 2, AxisPadding::Valid), Some((5, 0)));
        // EXPLICIT: the padded length, VALID; the padding before is as given
        assert_eq!(window_output(7, 3, 2, 1, AxisPadding::Explicit([2, 1])), Some((4, 2)));
        assert_eq!(
            window_output(7, 3, 2, 1, AxisPadding::Explicit([0, 0])),
            window_output(7, 3, 2, 1, AxisPadding::Valid)
        );
        assert_eq!(window_output(1, 3, 1, 1, AxisPadding::Explicit([0, 1])), None);
    }
}
