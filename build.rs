//! Generates the TensorFlow GraphDef and ONNX ModelProto types from `proto/` with prost-build, and
//! writes their file descriptor set to `OUT_DIR/tensorflow.fds` for the text
//! format reader (`.pbtxt`, prost-reflect).
//!
//! The .proto files are compiled by protox, a pure-Rust protobuf compiler, so a fresh
//! machine needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTOS: &[&str] = &[
        "proto/tensorflow/core/framework/graph.proto",
        "proto/tensorflow/core/protobuf/saved_model.proto",
        "proto/tensorflow/core/protobuf/tensor_bundle.proto",
        "proto/onnx/onnx.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_source_info(true).include_imports(true).open_files(PROTOS)?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // Without source info: the reader needs names and numbers, not comments.
    let descriptors = compiler.file_descriptor_set();
    let mut bare = descriptors.clone();
    for file in &mut bare.file {
        file.source_code_info = None;
    }
    std::fs::write(out.join("tensorflow.fds"), prost::Message::encode_to_vec(&bare))?;
    prost_build::Config::new()
        // Deterministic map iteration in generated code keeps `inspect` output stable.
        .btree_map(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
