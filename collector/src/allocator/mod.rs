//! Allocator tuning done once at start, before any thread exists.
//!
//! glibc gives every thread that contends for the heap an arena of its own (up to 8 per core)
//! and keeps freed memory in each: with the runtime's workers, the blocking pool and SQLite's
//! connection threads, a 100 000-machine embedded run held ~100 MiB more than it used. Two
//! arenas keep the embedded default cheap (BENCHMARKS.md, "SQLite memory"); `MALLOC_ARENA_MAX`
//! in the environment still wins.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod linux;

/// Arenas of the C allocator when the environment does not say.
pub const ARENAS: i32 = 2;

/// Applies the tuning; call first thing in `main`, before the runtime starts threads.
pub fn tune() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    linux::limit_arenas(ARENAS);
}
