//! The worker threads' scheduling policy: `SCHED_BATCH`.
//!
//! A worker sleeps once per query and is woken when PostgreSQL answers. Under Linux's
//! normal policy a woken thread may preempt whatever runs on that core at once (often
//! the PostgreSQL backend that is about to answer another worker, or the thread about
//! to read the next request), so each request also paid for about half an involuntary
//! switch. `SCHED_BATCH` is the same fair share of the CPU without that wake-up
//! preemption: a woken worker waits for the running thread's slice or its next sleep.
//! Any process may choose it for its own threads; no privilege is needed.
#![allow(unsafe_code)]

use std::io;

/// Puts the calling thread under `SCHED_BATCH`.
pub fn batch_this_thread() -> io::Result<()> {
    /// The kernel's `struct sched_param`: one `int`. (musl's is larger, and its
    /// `sched_setscheduler` wrapper refuses to work on threads at all, so we make the
    /// system call ourselves.)
    #[repr(C)]
    struct Param {
        priority: libc::c_int,
    }
    let param = Param { priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid `struct sched_param` that
    // outlives the call, which only reads it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0,
            libc::SCHED_BATCH,
            &param as *const Param,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
