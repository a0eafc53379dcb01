//! glibc's `mallopt` (FFI: this module alone in the collector allows `unsafe`).
#![allow(unsafe_code)]

/// Caps glibc's malloc arenas at `arenas`. A refusal (return value 0) leaves glibc's default.
pub fn limit_arenas(arenas: i32) {
    // SAFETY: `mallopt` only sets an allocator parameter, and it runs before any other thread
    // of the process exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}
