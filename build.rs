//! Generates the TensorFlow GraphDef and ONNX ModelProto types from `proto/` with prost-build, and
//! writes their file descriptor set to `OUT_DIR/tensorflow.fds` for the text
//! format reader (`.pbtxt`, prost-reflect).
//!
//! The .proto files are compiled by protox, a pure-Rust protobuf compiler, so a fresh
//! machine needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    stamp_version();
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

/// `TFE_RUN_COMMIT` for `tfe-run --version`: the short commit, with `-dirty` when
/// tracked files differ from it, or `unknown` outside a git checkout of this crate
/// (a tarball, `cargo install` from crates.io, no git): a version stamp never
/// fails the build.
fn stamp_version() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").arg("-C").arg(&dir).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    // Only this crate's own repository: a tarball unpacked inside another
    // checkout must not take that checkout's commit.
    let own = git(&["rev-parse", "--show-toplevel"])
        .is_some_and(|top| std::fs::canonicalize(top).ok() == std::fs::canonicalize(&dir).ok());
    let commit = own.then(|| git(&["rev-parse", "--short", "HEAD"])).flatten();
    let stamp = match commit {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            // Rerun on a commit, a checkout or a change staged; an edit not yet
            // staged shows as -dirty from the next build that reruns this script.
            for path in ["HEAD", "index", "packed-refs"] {
                if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
            if let Some(p) = git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r])) {
                println!("cargo:rerun-if-changed={p}");
            }
            if dirty { format!("{commit}-dirty") } else { commit }
        }
        None => "unknown".to_string(),
    };
    println!("cargo:rustc-env=TFE_RUN_COMMIT={stamp}");
}
