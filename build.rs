//! Generates the TensorFlow GraphDef types from `proto/` with prost-build.
//!
//! The .proto files are compiled by protox, a pure-Rust protobuf compiler, so a fresh
//! machine needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTOS: &[&str] = &[
        "proto/tensorflow/core/framework/graph.proto",
        "proto/tensorflow/core/protobuf/saved_model.proto",
        "proto/tensorflow/core/protobuf/tensor_bundle.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    prost_build::Config::new()
        // Deterministic map iteration in generated code keeps `inspect` output stable.
        .btree_map(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
