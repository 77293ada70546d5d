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
    set_policy(libc::SCHED_BATCH)
}

/// Puts the calling thread under `policy` (priority 0).
fn set_policy(policy: libc::c_int) -> io::Result<()> {
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
            policy,
            &param as *const Param,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's policy: field 41 of its `stat`.
    fn policy() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = stat.rsplit_once(')').unwrap().1;
        after_name
            .split_whitespace()
            .nth(41 - 3)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn the_thread_that_asks_is_batch_and_no_other() {
        let before = policy();
        let batch = std::thread::spawn(|| batch_this_thread().map(|()| policy()));
        assert_eq!(batch.join().unwrap().unwrap(), libc::SCHED_BATCH);
        assert_eq!(policy(), before, "the calling thread only");
    }

    #[test]
    fn a_refused_call_is_an_error_not_a_silent_success() {
        let refused = std::thread::spawn(|| set_policy(-1)).join().unwrap();
        assert_eq!(refused.unwrap_err().raw_os_error(), Some(libc::EINVAL));
    }
}
