//! `thoth-gateway`: the SIEM forwarding gateway of the Thoth AI-governance platform.
//! This binary parses the command line ([`cli`], one module per command) and runs the
//! gateway ([`gateway`]: the stages, the crates, wired together; [`api`] its own endpoints;
//! [`pipeline`] the hot path from ingest to the WAL; [`supervisor`] its background tasks).

mod api;
mod cli;
mod default_config;
mod gateway;
mod pipeline;
mod programs;
mod supervisor;

use std::process::ExitCode;

use clap::Parser;

// See Cargo.toml: measured faster than glibc's allocator on the hot path, and it returns
// memory freed after an MDM snapshot load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Hands memory this thread freed back to the system now. An MDM load frees about as much as
/// the index it builds, and mimalloc purges a thread's free pages only when that thread
/// allocates again: at 100 000 endpoints, 60 MiB stayed resident (BENCHMARKS.md).
pub(crate) fn release_freed_memory() {
    // SAFETY: mi_collect only walks and purges the calling thread's heap and abandoned
    // segments; it has no preconditions.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Keeps the kernel from backing this process's heap with transparent huge pages. mimalloc
/// asks for them on its arenas, and a 2 MiB page stays resident while any 4 KiB of it is in
/// use: under load that held about 20 MiB more at the peak (BENCHMARKS.md), for no measured
/// gain in speed. Called first, before the heap grows; harmless where THP is off.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process; it takes no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let code = cli::run(cli::Cli::parse());
    ExitCode::from(code as u8)
}
