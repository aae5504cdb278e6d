//! What a model file is, told from its bytes (a directory from what it holds):
//! the formats tfe-run reads, and for each one it does not, what it is and the
//! one command that converts it. A user who passes a Keras file, a SavedModel or
//! an array learns that, not "protobuf decoding failed".

use std::path::Path;

use anyhow::Result;

use crate::error::Error;

/// The model formats tfe-run reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A binary `GraphDef` (a frozen TensorFlow graph, `.pb`).
    GraphDef,
    /// A `GraphDef` in protobuf text format (`.pbtxt`).
    TextGraphDef,
    /// An ONNX `ModelProto` (`.onnx`).
    Onnx,
}

/// The freezing every conversion below ends with: a concrete function of the
/// model, its variables made constants (what tfe-run reads).
const FREEZE: &str = "from tensorflow.python.framework.convert_to_constants import \
                      convert_variables_to_constants_v2 as freeze; ";

/// The command that freezes a Keras model file, loaded by `loader`.
fn freeze_keras(file: &str, import: &str, loader: &str) -> String {
    format!(
        "python -c \"import tensorflow as tf, {import}; {FREEZE}m = {loader}('{file}'); \
         f = tf.function(lambda x: m(x)).get_concrete_function(tf.TensorSpec(m.inputs[0].shape, m.inputs[0].dtype)); \
         open('model.pb', 'wb').write(freeze(f).graph.as_graph_def().SerializeToString())\""
    )
}

/// A directory given as the model that is not a SavedModel.
pub fn directory(path: &Path) -> anyhow::Error {
    Error::bad_input(format!(
        "`{}` is a directory, not a model file (a frozen GraphDef, .pb) nor a SavedModel directory \
         (saved_model.pb and variables/)",
        path.display()
    ))
}

/// The largest binary model read: protobuf messages are at most 2 GiB.
const MAX_BINARY_BYTES: u64 = 2 << 30;

/// The bytes of the model file at `path`, read up to its format's bound (a
/// text GraphDef's is [`MAX_TEXT_BYTES`](crate::frontend::tf::text::MAX_TEXT_BYTES)),
/// so that a huge file is refused before it is read.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let shown = path.display().to_string();
    let cannot = |e: std::io::Error| Error::bad_input(format!("cannot read model `{shown}`: {e}"));
    let text = path.extension().is_some_and(|e| e == "pbtxt");
    let limit = if text { crate::frontend::tf::text::MAX_TEXT_BYTES as u64 } else { MAX_BINARY_BYTES };
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes).map_err(cannot)?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > limit) {
        let size = std::fs::metadata(path).map_or_else(|_| "more".to_string(), |m| m.len().to_string());
        return Err(if text {
            Error::unsupported(format!(
                "`{shown}` is a text GraphDef of {size} bytes, more than the {} MiB tfe-run reads in text form; \
                 convert it to the binary format with\n  {}\nand run tfe-run on model.pb",
                limit >> 20,
                crate::frontend::tf::text::to_binary_command(&shown)
            ))
        } else {
            Error::invalid_model(format!("`{shown}` has {size} bytes: a protobuf message has at most 2 GiB"))
        });
    }
    Ok(bytes)
}

/// The format of the model file at `path` with these bytes, or what it is
/// instead and how to convert it.
pub fn recognise(path: &Path, bytes: &[u8]) -> Result<Format> {
    let shown = path.display().to_string();
    let refuse = |what: &str, how: String| Err(Error::unsupported(format!("`{shown}` is {what}: {how}")));
    if bytes.starts_with(b"PK\x03\x04") {
        return refuse(
            "a zip archive (a Keras 3 `.keras` model), not a GraphDef",
            format!(
                "freeze it into one with\n  {}\nand run tfe-run on model.pb",
                freeze_keras(&shown, "keras", "keras.saving.load_model")
            ),
        );
    }
    if bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
        return refuse(
            "an HDF5 file (a Keras `.h5` model), not a GraphDef",
            format!(
                "freeze it into one with\n  {}\nand run tfe-run on model.pb",
                freeze_keras(&shown, "tf_keras", "tf_keras.models.load_model")
            ),
        );
    }
    if bytes.starts_with(b"\x93NUMPY") {
        return Err(Error::bad_input(format!(
            "`{shown}` is a NumPy array, not a model: the model comes first, then its input: \
             `tfe-run MODEL.pb INPUT.npy`"
        )));
    }
    if path.file_name().is_some_and(|n| n == "saved_model.pb" || n == "saved_model.pbtxt") {
        let dir = path.parent().map_or_else(|| ".".to_string(), |p| p.display().to_string());
        let dir = if dir.is_empty() { ".".to_string() } else { dir };
        return refuse(
            "a SavedModel's graph, which holds no weights (they are in its `variables/`)",
            format!("run tfe-run on the SavedModel directory instead: `tfe-run {dir} INPUT.npy`"),
        );
    }
    // Told from the bytes (an ir_version and a graph); a `.onnx` file that does not
    // decode is refused by the ONNX decoder, whose error says why.
    if crate::frontend::onnx::looks_like_onnx(bytes) || path.extension().is_some_and(|e| e == "onnx") {
        return Ok(Format::Onnx);
    }
    if path.extension().is_some_and(|e| e == "pbtxt") || looks_like_text(bytes) {
        return Ok(Format::TextGraphDef);
    }
    Ok(Format::GraphDef)
}

/// Protobuf text format (`.pbtxt`, `tf.io.write_graph(..., as_text=True)`): UTF-8
/// whose first field, after comments, is one of GraphDef's.
fn looks_like_text(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let first = text.lines().map(str::trim_start).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or_default();
    ["node", "versions", "library", "version"]
        .iter()
        .any(|f| first.strip_prefix(f).is_some_and(|rest| rest.trim_start().starts_with(['{', ':'])))
}

/// The variable ops of an unfrozen graph, and the command that freezes one.
pub const VARIABLE_OPS: &[&str] = &["VariableV2", "Variable", "VarHandleOp"];

pub fn unfrozen(node: &str, op: &str) -> anyhow::Error {
    Error::unsupported(format!(
        "the graph is not frozen: {op} `{node}` holds a variable, whose value is in a checkpoint, not in the graph. \
         Freeze it first, e.g. with\n  python -m tensorflow.python.tools.freeze_graph --input_graph=GRAPH.pb \
         --input_binary=true --input_checkpoint=CHECKPOINT --output_node_names=OUTPUT --output_graph=frozen.pb"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(name: &str, bytes: &[u8]) -> String {
        match recognise(Path::new(name), bytes) {
            Ok(f) => format!("{f:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn files_that_are_not_graphdefs_are_named_with_their_conversion() {
        assert!(what("m.keras", b"PK\x03\x04rest").contains("a zip archive (a Keras 3 `.keras` model)"));
        assert!(what("m.keras", b"PK\x03\x04rest").contains("keras.saving.load_model('m.keras')"));
        assert!(what("m.h5", b"\x89HDF\r\n\x1a\nrest").contains("tf_keras.models.load_model('m.h5')"));
        assert!(what("x.npy", b"\x93NUMPY\x01\x00").contains("a NumPy array, not a model"));
        let alone = what("dir/saved_model.pb", b"\x08\x01\x12\x00");
        assert!(alone.contains("a SavedModel's graph") && alone.contains("`tfe-run dir INPUT.npy`"), "{alone}");
        assert_eq!(what("m.onnx", b"\x08\x07"), "Onnx");
    }

    #[test]
    fn text_graphdefs_are_told_from_binary_ones() {
        // Told from the bytes, whatever the name; a .pbtxt is read as text.
        let text = |bytes: &[u8]| what("g.txt", bytes) == "TextGraphDef";
        assert!(text(b"node {\n  name: \"x\"\n}\n"));
        assert!(text(b"# written by hand\n\nversions {\n producer: 1 }\n"));
        assert_eq!(what("g.pbtxt", b"\n\x05\n\x01x"), "TextGraphDef");
        assert_eq!(what("g.pb", b"\n\x05\n\x01x"), "GraphDef");
        let saved = what("dir/saved_model.pbtxt", b"saved_model_schema_version: 1");
        assert!(saved.contains("a SavedModel's graph"), "{saved}");
        // Text that is not a GraphDef's is left to the binary decoder, which refuses it.
        assert_eq!(what("g.pb", b"hello world"), "GraphDef");
    }
}
