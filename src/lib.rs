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

/// mimalloc's `mi_option_purge_delay` (its `mi_option_e` index in mimalloc 3; the
/// `libmimalloc-sys` bindings name no constant for it). A test checks the index
/// against the option's default in mimalloc 3's `options.c` (1000 ms).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keep freed memory mapped for reuse instead of handing it back to the kernel.
///
/// By default mimalloc purges freed pages a second after they are freed and when
/// their thread ends (the parties' threads end with each session); the next tensors then fault them in again and the kernel zeroes
/// every page: a fifth of the CPU time of a batch-100 session went to
/// `clear_page_erms` (BENCHMARKS.md, "Where the time goes"). A one-shot process
/// (a prediction, a deployment, a training run) keeps its peak instead, which it
/// reaches anyway. `serve` does not call this: a long-running party returns memory
/// to the system between sessions.
pub fn keep_freed_memory() {
    // SAFETY: mi_option_set only stores an integer option; mimalloc reads the
    // purge delay at each purge decision, so setting it at any time is sound.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

#[cfg(test)]
mod allocator_tests {
    #[test]
    fn the_purge_delay_option_index_is_mimallocs() {
        // mimalloc 3's options.c sets purge_delay's default to 1000 (ms); the next
        // option, use_numa_nodes, is one the bindings name. Read without setting:
        // no test calls keep_freed_memory.
        // SAFETY: mi_option_get only reads an integer option.
        let delay = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, 1000);
        assert_eq!(libmimalloc_sys::mi_option_use_numa_nodes, super::MI_OPTION_PURGE_DELAY + 1);
    }
}
