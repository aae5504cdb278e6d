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
}

/// The output length and the padding before, for one spatial axis of a window op,
/// exactly as TensorFlow computes them (SAME puts the odd padding element after).
pub fn window_output(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    padding: Padding,
) -> Option<(usize, usize)> {
    let effective = kernel.checked_sub(1)?.checked_mul(dilation)?.checked_add(1)?;
    if stride == 0 {
        return None;
    }
    match padding {
        Padding::Valid => Some((input.checked_sub(effective)?.checked_div(stride)?.checked_add(1)?, 0)),
        Padding::Same => {
            let out = input.div_ceil(stride);
            // A window from the network may be of any size: one whose padding
            // does not fit a usize does not fit the input.
            let reach = out.saturating_sub(1).checked_mul(stride)?.checked_add(effective)?;
            Some((out, reach.saturating_sub(input) / 2))
        }
    }
}

/// The geometry of a 2-D window op over an NHWC tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub padding: Padding,
}

/// Output height/width and top/left padding of `window` over an input of `hw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub out: [usize; 2],
    pub pad: [usize; 2],
}

impl Window {
    pub fn geometry(&self, hw: [usize; 2]) -> Option<Geometry> {
        let (oh, pt) = window_output(hw[0], self.kernel[0], self.strides[0], self.dilations[0], self.padding)?;
        let (ow, pl) = window_output(hw[1], self.kernel[1], self.strides[1], self.dilations[1], self.padding)?;
        Some(Geometry { out: [oh, ow], pad: [pt, pl] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_output_matches_tensorflow() {
        // VALID: ceil((in - k + 1) / s)
        assert_eq!(window_output(28, 5, 1, 1, Padding::Valid), Some((24, 0)));
        assert_eq!(window_output(7, 3, 2, 1, Padding::Valid), Some((3, 0)));
        assert_eq!(window_output(2, 3, 1, 1, Padding::Valid), None);
        // SAME: ceil(in / s), extra padding after
        assert_eq!(window_output(7, 3, 2, 1, Padding::Same), Some((4, 1)));
        assert_eq!(window_output(8, 3, 2, 1, Padding::Same), Some((4, 0)));
        assert_eq!(window_output(5, 2, 2, 1, Padding::Same), Some((3, 0)));
        // dilation 2 turns a 3-tap kernel into an effective 5
        assert_eq!(window_output(9, 3, 1, 2, Padding::Valid), Some((5, 0)));
    }
}
