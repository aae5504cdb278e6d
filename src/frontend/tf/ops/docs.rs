//! What each imported TensorFlow op accepts and how it runs under Pond: the
//! op table of docs/OPS.md is printed from this registry (`tfe-run ops`), and a test
//! keeps the two equal. Every op of the import table has exactly one row.

/// One row: the op types it covers, what they accept, how they run on shares.
pub struct OpDoc {
    pub ops: &'static [&'static str],
    pub notes: &'static str,
    pub secure: &'static str,
}

pub const OP_DOCS: &[OpDoc] = &[
    OpDoc {
        ops: &["Placeholder", "PlaceholderWithDefault"],
        notes: "the client's private inputs: float32/float64, or integers (int8–int64, uint8: token ids; a fraction in the file is refused, exit 2)",
        secure: "secret-shared by the client",
    },
    OpDoc {
        ops: &["Const"],
        notes: "float constants that meet private data are the model owner's private weights; integer ones are public parameters",
        secure: "weights secret-shared by the model owner",
    },
    OpDoc {
        ops: &["Identity", "IdentityN", "StopGradient", "Snapshot", "NoOp"],
        notes: "pass-through (TF2 freezing reads every weight through an Identity)",
        secure: "nothing to do",
    },
    OpDoc {
        ops: &["MatMul"],
        notes: "`transpose_a`, `transpose_b`",
        secure: "Beaver product with reused masks, truncation",
    },
    OpDoc {
        ops: &["BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"],
        notes: "`adj_x`, `adj_y`; batch axes broadcast as TensorFlow does (v1 needs equal ranks); two private tensors (attention's Q·Kᵀ and scores·V, Keras `Dot`) or a private tensor and a weight; two matrices are a MatMul",
        secure: "Beaver product with its own bilinear map, reused masks, truncation",
    },
    OpDoc {
        ops: &["Einsum"],
        notes: "two operands, one letter per axis, explicit `->` (tf_keras EinsumDense/MultiHeadAttention); lowered at import to transposes/reshapes around one product; an ellipsis, an index repeated or summed within one operand, or ≠ 2 operands is refused naming the equation",
        secure: "as BatchMatMul / MatMul",
    },
    OpDoc {
        ops: &["Less"],
        notes: "NumPy broadcasting; result 0 or 1; folds on known or random-range values",
        secure: "exact: one DReLU of the difference",
    },
    OpDoc {
        ops: &["Conv2D"],
        notes: "NHWC or NCHW (`data_format`); SAME, VALID and EXPLICIT (`explicit_paddings`, batch and channel pads 0); strides; dilations",
        secure: "Beaver product with reused masks, truncation",
    },
    OpDoc {
        ops: &["Conv2DBackpropInput"],
        notes: "Keras `Conv2DTranspose`; NHWC; SAME, VALID, EXPLICIT; strides; dilations; public output shape",
        secure: "Beaver product with its own bilinear map, reused masks, truncation",
    },
    OpDoc {
        ops: &["DepthwiseConv2dNative"],
        notes: "NHWC; SAME, VALID, EXPLICIT; strides; dilations; any depth multiplier (Keras `DepthwiseConv2D`, the first half of `SeparableConv2D`; MobileNet)",
        secure: "Beaver product with its own bilinear map, reused masks, truncation",
    },
    OpDoc { ops: &["BiasAdd"], notes: "NHWC or NCHW", secure: "local" },
    OpDoc { ops: &["Add", "AddV2", "Sub"], notes: "NumPy broadcasting", secure: "local" },
    OpDoc { ops: &["Mul"], notes: "NumPy broadcasting", secure: "Beaver product, truncation" },
    OpDoc {
        ops: &["RealDiv"],
        notes: "by a public constant (a product with its reciprocal) or by a private value (Reciprocal, then Mul)",
        secure: "as Mul; by a private value: secure reciprocal and a product",
    },
    OpDoc {
        ops: &["Reciprocal", "Inv"],
        notes: "private x in [2^−8, 2^16) at 16 bits: \\|error\\| ≤ 1e-4/x + 2^−15; 256 below (x ≤ 0 included), 0 above",
        secure: "octave by one batched DReLU, 4 Goldschmidt iterations (18 rounds)",
    },
    OpDoc {
        ops: &["Square", "SquaredDifference"],
        notes: "(a − b)² as `tf.nn.moments` writes it",
        secure: "a Beaver product",
    },
    OpDoc { ops: &["Abs"], notes: "", secure: "exact: 2·ReLU(x) − x, one ReLU" },
    OpDoc {
        ops: &["ClipByValue"],
        notes: "public scalar bounds, \\|bound\\| ≤ 16384; `tf.clip_by_value` (Minimum then Maximum) is fused into one",
        secure: "exact: lo + ReLU(x − lo) − ReLU(x − hi) in one batched ReLU",
    },
    OpDoc { ops: &["Neg"], notes: "", secure: "local" },
    OpDoc {
        ops: &["AvgPool", "MaxPool"],
        notes: "NHWC or NCHW; SAME and VALID, MaxPool also EXPLICIT; SAME AvgPool divides by the number of real (unpadded) pixels, as TensorFlow",
        secure: "AvgPool: local sum × public 1/count; MaxPool: exact, by comparison tournament",
    },
    OpDoc {
        ops: &["ResizeBilinear"],
        notes: "`size` public; `align_corners`, `half_pixel_centers` (Keras `UpSampling2D(interpolation=\"bilinear\")`)",
        secure: "local weighted sum, public weights, one truncation; error ≤ 4·max\\|x\\|·2^−17 + 2^−16",
    },
    OpDoc {
        ops: &["ResizeNearestNeighbor"],
        notes: "`size` public; `align_corners`, `half_pixel_centers` (tf_keras `UpSampling2D`)",
        secure: "local (two gathers)",
    },
    OpDoc { ops: &["Relu"], notes: "", secure: "exact: DReLU by dealer-assisted comparison, then a product" },
    OpDoc {
        ops: &["Relu6"],
        notes: "Keras `ReLU(max_value=6)`, `activation=\"relu6\"` (MobileNet)",
        secure: "exact: ReLU(x) − ReLU(x − 6) in one batched ReLU",
    },
    OpDoc {
        ops: &["LeakyRelu"],
        notes: "`alpha` (Keras `LeakyReLU()`: 0.3; TF default 0.2); \\|alpha\\| ≤ 1024",
        secure: "one ReLU and one truncation; error ≤ (\\|x\\| + 2)·2^−17",
    },
    OpDoc {
        ops: &["Maximum", "Minimum"],
        notes: "two private (or weight) tensors, NumPy broadcasting; Keras `Maximum()`; with a one-element constant: a public one-sided clip (one ReLU)",
        secure: "exact: a ± ReLU(b − a)",
    },
    OpDoc {
        ops: &["Sigmoid", "Tanh"],
        notes: "",
        secure: "client-side if the model's last op; elsewhere cubics on 24 segments of [-10, 10] / [-5.5, 5.5], exact saturation outside (curve error 4.5e-5 / 8.4e-5, as `inspect` prints; measured under Pond 3.5e-5 / 9.2e-5 on [-8, 8])",
    },
    OpDoc {
        ops: &["Elu", "Selu", "Softplus", "Softsign", "Erf", "Erfc"],
        notes: "Keras `elu`, `selu`, `softplus`, `softsign`; `gelu` exports Erfc (its tanh form: Tanh and Pow), mish Softplus and Tanh: each composition is fused at import into one curve of its own (`Gelu`, `GeluTanh`, `Mish` in `inspect`)",
        secure: "piecewise cubic with exact tails (see PROTOCOL.md); max error 3e-5 to 1e-3; fused GELU 5.2e-5 on [-5, 5] (0 below, x above), mish 4.8e-5 on [-16, 8] (0 below, x above)",
    },
    OpDoc {
        ops: &["Pow"],
        notes: "exponent a known constant; a private base to a whole exponent 1–4",
        secure: "products (x³ needs \\|x\\| < 2^10)",
    },
    OpDoc {
        ops: &["Greater"],
        notes: "NumPy broadcasting; with SelectV2 (`tf.where`, Keras `ELU(alpha≠1)`)",
        secure: "exact: one DReLU",
    },
    OpDoc { ops: &["SelectV2"], notes: "NumPy broadcasting", secure: "e + c·(t − e): one product" },
    OpDoc {
        ops: &["Softmax"],
        notes: "over the last axis (other axes: TF's transposes, local)",
        secure: "client-side if the model's last op; elsewhere max by tournament, exp, sum, reciprocal, product (\\|error\\| ≤ 1e-4)",
    },
    OpDoc {
        ops: &["Exp"],
        notes: "Keras `activation=\"exponential\"`; [−12, 10]: \\|error\\| ≤ 1e-4·e^x + 2^−14; exactly 0 below, e^10 above",
        secure: "piecewise cubic (14 rounds)",
    },
    OpDoc {
        ops: &["Mean", "Sum", "Max"],
        notes: "public axes, `keep_dims` (Mean over H, W is global average pooling)",
        secure: "Mean: local sum × public scale; Sum: local; Max: exact tournament",
    },
    OpDoc {
        ops: &["ArgMax"],
        notes: "public axis; integer output, printed as the class",
        secure: "as the model's output: tournament carrying the index",
    },
    OpDoc {
        ops: &["FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"],
        notes: "inference mode folded into `x·scale + offset`; training mode (tf_keras LayerNormalization) by the batch's own statistics, NHWC or NCHW",
        secure: "a product and a local add; training mode: Mean, product, Mean, Rsqrt, product",
    },
    OpDoc {
        ops: &["Rsqrt"],
        notes: "public: folded (BatchNorm); private: [2^−8, 2^30) at 16 bits, \\|error\\| ≤ 1e-4/√x + 2^−15, 16 below",
        secure: "octave by one batched DReLU, 4 Goldschmidt iterations (24 rounds)",
    },
    OpDoc {
        ops: &["Reshape", "Squeeze", "ExpandDims", "Transpose"],
        notes: "public shapes, axes and permutations",
        secure: "local",
    },
    OpDoc { ops: &["Pad", "PadV2"], notes: "public paddings; constant value 0", secure: "local" },
    OpDoc { ops: &["ConcatV2", "Concat", "Pack"], notes: "public axis", secure: "local" },
    OpDoc { ops: &["Slice", "StridedSlice"], notes: "public begin/end/strides; all five masks", secure: "local" },
    OpDoc { ops: &["Split", "SplitV"], notes: "public sizes and axis", secure: "local" },
    OpDoc {
        ops: &["Tile", "Unpack"],
        notes: "public multiples / axis (Keras 3 `UpSampling2D`, `RepeatVector`, unrolled RNNs)",
        secure: "local",
    },
    OpDoc {
        ops: &["GatherV2", "Gather"],
        notes: "public indices, `batch_dims` 0; private indices (Keras `Embedding` on the client's int32 ids): axis 0 of the model owner's table, an id outside [0, V) gives a row of zeros",
        secure: "public indices: local; private ones: OneHot by one batched DReLU of V + 1 comparisons per id, then a Beaver product with the table",
    },
    OpDoc {
        ops: &["SpaceToBatchND", "BatchToSpaceND"],
        notes: "public block shape and paddings/crops (how Keras 3 writes dilated convolutions)",
        secure: "local",
    },
    OpDoc { ops: &["Shape", "Size", "Rank"], notes: "always public: shapes are static in a plan", secure: "public" },
    OpDoc { ops: &["Prod", "Fill", "Range"], notes: "known (shape) values only", secure: "folded at import" },
    OpDoc {
        ops: &["Sqrt", "Floor", "FloorDiv", "FloorMod", "Equal", "NotEqual", "LessEqual", "GreaterEqual", "Select"],
        notes: "on public values (shapes, constants); Select with a known condition picks a whole branch",
        secure: "public values only",
    },
    OpDoc {
        ops: &["LogicalAnd", "LogicalOr", "LogicalNot"],
        notes: "on public booleans (a loop condition on its counters)",
        secure: "public values only",
    },
    OpDoc {
        ops: &["While", "StatelessWhile"],
        notes: "unrolled at import: the `cond` function must fold to a public boolean on the loop state (counters, `maximum_iterations`, list lengths), else refused naming the node; the `body` is instantiated once per iteration (at most 10,000, within the 2^20-node budget); TF1 Enter/Merge/Switch/LoopCond/NextIteration/Exit frames are read as a While (docs/FORMATS.md)",
        secure: "its body's ops, once per iteration",
    },
    OpDoc {
        ops: &["OptionalFromValue", "OptionalNone"],
        notes: "the gradient intermediates a trained graph's If branches return (`*_rewritten` functions): training-only outputs, refused where an inference graph would read one",
        secure: "never computed",
    },
    OpDoc {
        ops: &["If", "StatelessIf", "Switch", "Merge"],
        notes: "tf.cond, decided at import: the predicate must fold to a public boolean (a constant, a shape, a placeholder's default such as is_training, or `--public`), else refused naming the node; an If instantiates the branch it picks, a TF1 Switch/Merge (outside loops) marks the other branch dead as TensorFlow's executor does; a cond inside a TF1 loop frame is refused",
        secure: "the taken branch's ops",
    },
    OpDoc {
        ops: &[
            "TensorListReserve",
            "TensorListFromTensor",
            "TensorListGetItem",
            "TensorListSetItem",
            "TensorListStack",
            "TensorListLength",
            "TensorListElementShape",
        ],
        notes: "TF2 TensorArrays, resolved at import: public length (at most 2^20) and public indices, a private index is refused; an unwritten element reads as zeros of a known element shape",
        secure: "local (slices, reshapes, a concatenation)",
    },
    OpDoc {
        ops: &[
            "TensorArrayV3",
            "TensorArrayWriteV3",
            "TensorArrayScatterV3",
            "TensorArrayReadV3",
            "TensorArrayGatherV3",
            "TensorArraySizeV3",
            "TensorArrayCloseV3",
        ],
        notes: "TF1 TensorArrays (tf.compat.v1 control flow, dynamic_rnn), resolved at import as TF2's lists: the flow carries the array, the handle is a loop invariant; a fixed public size (dynamic_size=True is refused), public indices; an unwritten element reads as zeros of a known element shape",
        secure: "local (slices, reshapes, a concatenation)",
    },
    OpDoc {
        ops: &["RandomUniform"],
        notes: "never sampled: a range [0, 1 − 2^−23]; a dropout decided by it (keep_prob 1, rate 0) folds away, an undecided one is refused naming the node",
        secure: "public values only",
    },
    OpDoc {
        ops: &["Cast"],
        notes: "on public values, and float-to-float on private ones",
        secure: "public values only",
    },
];

/// The table of docs/OPS.md: a header and one row per entry, in registry order.
pub fn markdown() -> String {
    let mut out = String::from("| op | notes | under Pond |\n| --- | --- | --- |\n");
    for doc in OP_DOCS {
        let notes = if doc.notes.is_empty() { String::new() } else { format!(" {}", doc.notes) };
        out.push_str(&format!("| {} |{notes} | {} |\n", doc.ops.join(", "), doc.secure));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_imported_op_has_exactly_one_row_and_every_row_names_imported_ops() {
        for op in super::super::SUPPORTED_OPS {
            let rows = OP_DOCS.iter().filter(|d| d.ops.contains(op)).count();
            assert_eq!(rows, 1, "{op} is in {rows} rows of OP_DOCS");
        }
        for doc in OP_DOCS {
            for op in doc.ops {
                assert!(super::super::is_supported(op), "OP_DOCS documents {op}, which the import table lacks");
            }
        }
    }

    #[test]
    fn the_op_table_of_docs_ops_md_is_the_registry() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPS.md")).unwrap();
        let table = markdown();
        assert!(
            doc.contains(&table),
            "docs/OPS.md's op table differs from OP_DOCS: replace it with the output of `tfe-run ops`:\n{table}"
        );
    }
}
