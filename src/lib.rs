//! tfe-run: private inference on frozen TensorFlow graphs.
//!
//! Data flows one way: a model is [loaded](frontend) into a [plan], which is
//! executed in the clear by [`plaintext`] (the reference) or, under Pond, by the
//! secure runtime.

// No unwrap outside tests: an error names what is wrong instead (docs/THREAT_MODEL.md).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod batches;
pub mod cli;
pub mod cluster;
pub mod error;
pub mod frontend;
#[doc(hidden)]
pub mod fuzzing;
pub mod kernels;
pub mod lower;
pub mod npy;
pub mod ops;
pub mod plaintext;
pub mod plan;
pub mod protocol;
pub mod remote;
pub mod ring;
pub mod runtime;
pub mod tensor;
pub mod train;
pub mod transport;

// The secure runtime allocates and frees tensors of megabytes at every step;
// glibc's allocator hands large blocks back to the kernel and faults them in
// again. mimalloc keeps them for reuse.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
