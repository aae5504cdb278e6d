//! Text GraphDefs (`.pbtxt`, `tf.io.write_graph(..., as_text=True)`): the
//! protobuf text format, parsed by prost-reflect against the descriptors of
//! `proto/` (written by build.rs) and transcoded to the same [`GraphDef`] a
//! binary file decodes to. Past this module a text model is a binary one.
//!
//! The text parser refuses a field or an enum name it does not know, so the
//! protos declare every field TensorFlow 2.21 writes (debug info, full types,
//! function attributes, ...), also those nothing reads. Three bounds keep a
//! hostile file from exhausting memory or the stack: its size
//! ([`MAX_TEXT_BYTES`]: a parsed list of numbers takes up to ~60 times its text), its
//! nesting ([`MAX_DEPTH`], checked before parsing: the parser recurses once per
//! level) and, as for binary files, the size of each constant when it is
//! decoded.

use std::sync::OnceLock;

use anyhow::Result;
use prost_reflect::{DescriptorPool, DynamicMessage};

use super::proto::GraphDef;
use crate::error::Error;

/// The largest text GraphDef read: 16 MiB, a binary model of about 6 MB
/// (MobileNetV2 at alpha 0.35 is 5.3 MB of text). The parsed form of a list of
/// numbers takes up to ~60 times its text (8 MB of `1,` peaked at 0.5 GB), so
/// this bounds the parse at about 1 GB. Bigger models are better kept binary,
/// which the refusal says how to do.
pub const MAX_TEXT_BYTES: usize = 16 << 20;

/// The deepest nesting of messages (`{ ... }` or `< ... >`) read: TensorFlow's
/// own graphs nest about ten deep (a function's node's attribute's tensor's
/// shape's dimension); 100 is prost's limit for binary messages too.
pub const MAX_DEPTH: usize = 100;

/// The descriptors of `proto/`, as compiled by build.rs.
static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tensorflow.fds"));

fn pool() -> Result<&'static DescriptorPool> {
    static POOL: OnceLock<std::result::Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("internal error: the GraphDef descriptors do not decode: {e}"))
}

/// The command that converts the text GraphDef at `shown` into a binary one.
pub fn to_binary_command(shown: &str) -> String {
    format!(
        "python -c \"import tensorflow as tf; from google.protobuf import text_format; \
         g = text_format.Parse(open('{shown}').read(), tf.compat.v1.GraphDef()); \
         open('model.pb', 'wb').write(g.SerializeToString())\""
    )
}

/// Parse a text GraphDef; `shown` names the file in messages. Every error
/// says where in the file (line and column) the text is at fault.
pub fn decode(bytes: &[u8], shown: &str) -> Result<GraphDef> {
    if bytes.len() > MAX_TEXT_BYTES {
        return Err(Error::unsupported(format!(
            "`{shown}` is a text GraphDef of {} bytes, more than the {} MiB tfe-run reads in text form; \
             convert it to the binary format with\n  {}\nand run tfe-run on model.pb",
            bytes.len(),
            MAX_TEXT_BYTES >> 20,
            to_binary_command(shown)
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = position(bytes, e.valid_up_to());
        Error::invalid_model(format!("line {line}, column {column}: the text GraphDef is not valid UTF-8"))
    })?;
    check_depth(text)?;
    let desc = pool()?
        .get_message_by_name("tensorflow.GraphDef")
        .ok_or_else(|| anyhow::anyhow!("internal error: no tensorflow.GraphDef descriptor"))?;
    let message = DynamicMessage::parse_text_format(desc, text).map_err(|e| {
        let at = error_offset(&e).map_or_else(String::new, |offset| {
            let (line, column) = position(bytes, offset);
            format!("line {line}, column {column}: ")
        });
        Error::invalid_model(format!("{at}not a text GraphDef: {e}"))
    })?;
    message
        .transcode_to::<GraphDef>()
        .map_err(|e| Error::invalid_model(format!("the text GraphDef does not transcode to a GraphDef: {e}")))
}

/// Where a parse error starts (a byte offset), when it says.
fn error_offset(e: &prost_reflect::text_format::ParseError) -> Option<usize> {
    use miette::Diagnostic;
    e.labels().and_then(|mut labels| labels.next()).map(|l| l.offset())
}

/// The 1-based line and column (in characters) of byte `offset`.
fn position(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = bytes.get(..offset).unwrap_or(bytes);
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i.saturating_add(1));
    let line = before.iter().filter(|&&b| b == b'\n').count().saturating_add(1);
    let rest = before.get(line_start..).unwrap_or_default();
    // Count characters, not bytes: UTF-8 continuation bytes start no character.
    let column = rest.iter().filter(|&&b| (b & 0xC0) != 0x80).count().saturating_add(1);
    (line, column)
}

/// Refuse nesting deeper than [`MAX_DEPTH`] before the (recursive) parser
/// sees it. Braces inside strings and comments do not count.
fn check_depth(text: &str) -> Result<()> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    let mut comment = false;
    for (offset, &b) in text.as_bytes().iter().enumerate() {
        if comment {
            comment = b != b'\n';
            continue;
        }
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == q || b == b'\n' {
                quote = None;
            }
            continue;
        }
        match b {
            b'"' | b'\'' => quote = Some(b),
            b'#' => comment = true,
            b'{' | b'<' => {
                depth = depth.saturating_add(1);
                if depth > MAX_DEPTH {
                    let (line, column) = position(text.as_bytes(), offset);
                    return Err(Error::invalid_model(format!(
                        "line {line}, column {column}: messages nest more than {MAX_DEPTH} deep"
                    )));
                }
            }
            b'}' | b'>' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        format!("{:#}", decode(text.as_bytes(), "m.pbtxt").unwrap_err())
    }

    #[test]
    fn a_text_graph_def_transcodes_to_the_binary_one() {
        let text = r#"
            node { name: "x" op: "Placeholder" attr { key: "dtype" value { type: DT_FLOAT } }
                   experimental_type { type_id: TFT_PRODUCT args { type_id: TFT_TENSOR args { type_id: TFT_FLOAT } } } }
            node { name: "c" op: "Const" attr { key: "value" value { tensor {
                   dtype: DT_FLOAT tensor_shape { dim { size: 2 } } float_val: [1.5, -2] } } } }
            versions { producer: 2129 bad_consumers: 7 }
            library { function { signature { name: "f" is_stateful: true } attr { key: "_noinline" value { b: true } } } }
        "#;
        let g = decode(text.as_bytes(), "m.pbtxt").unwrap();
        assert_eq!(g.node.len(), 2);
        assert_eq!(g.node[1].op, "Const");
        let Some(super::super::proto::tensorflow::attr_value::Value::Tensor(t)) =
            g.node[1].attr.get("value").and_then(|v| v.value.as_ref())
        else {
            panic!("no tensor")
        };
        assert_eq!(t.float_val, vec![1.5, -2.0]);
        assert_eq!(g.versions.unwrap().producer, 2129);
        assert_eq!(g.library.unwrap().function[0].signature.as_ref().unwrap().name, "f");
    }

    #[test]
    fn errors_say_line_and_column() {
        let e = error("node {\n  name: \"x\"\n  opp: \"Const\"\n}\n");
        assert!(e.contains("line 3, column 3") && e.contains("opp"), "{e}");
        let e = error("node {\n  name: \"x\"\n");
        assert!(e.contains("end of input"), "{e}");
        let e = error("node { attr { key: \"dtype\" value { type: DT_NOPE } } }");
        assert!(e.contains("line 1, column 42") && e.contains("DT_NOPE"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("node {{ experimental_type {}{}", "{ args ".repeat(100_000), "} ".repeat(100_000));
        let e = error(&deep);
        assert!(e.contains("nest more than 100 deep"), "{e}");
        // Braces in strings and comments are not nesting.
        let braces = format!("# {}\nnode {{ name: \"{}\" }}", "{".repeat(200), "{<".repeat(200));
        assert_eq!(decode(braces.as_bytes(), "m.pbtxt").unwrap().node[0].name, "{<".repeat(200));
    }

    #[test]
    fn invalid_utf8_is_placed() {
        let e = format!("{:#}", decode(b"node {\n name: \"\xff\" }", "m.pbtxt").unwrap_err());
        assert!(e.contains("line 2, column 9") && e.contains("UTF-8"), "{e}");
    }
}
