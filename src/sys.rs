//! The system calls the server makes directly: the process's CPU affinity
//! (read, and set for the helper threads),
//! adopting a listening socket into Glommio, `shutdown(2)` on a
//! connection's socket during a drain, and the change stamp of a file the
//! loaders watch. Every `unsafe` block of the crate
//! lives here, each with its `// SAFETY:` argument (clippy's
//! `undocumented_unsafe_blocks` is denied).

use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::time::SystemTime;

/// Modification time and length of a file: what the loaders (campaigns,
/// model, IVT lists) poll for change. `None`: it cannot be read.
pub fn file_stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())))
}

/// Cores this process may run on (its affinity mask).
pub fn allowed_cores() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set, and
    // sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the pointer and size describe `set`.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        return (0..n).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads within the set for any index below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Restricts the calling thread to `cores` (threads it spawns afterwards
/// inherit the mask). Cores past `CPU_SETSIZE` are ignored; an empty list
/// changes nothing.
pub fn set_thread_cores(cores: &[usize]) -> std::io::Result<()> {
    if cores.is_empty() {
        return Ok(());
    }
    // SAFETY: as in `allowed_cores`: zeroed is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cores.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: CPU_SET writes within the set for an index below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: pid 0 is this thread; the pointer and size describe `set`,
    // which sched_setaffinity only reads.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Hands a bound, listening TCP socket to Glommio, which closes it on drop.
pub fn glommio_listener(fd: OwnedFd) -> glommio::net::TcpListener {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` is an owned, listening TCP socket; `into_raw_fd` gives up
    // our ownership, which moves into the glommio listener.
    unsafe { glommio::net::TcpListener::from_raw_fd(fd.into_raw_fd()) }
}

/// Which half of a connection [`shutdown`] closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    /// Reads: a pending read returns end-of-file.
    Read,
    /// Both directions.
    Both,
}

/// `shutdown(2)` on a connection's socket, to wake or cut it during a drain.
///
/// The caller passes the fd of a connection that is still open: on a shard
/// the fd is registered by the connection's task and unregistered when it
/// ends, on the same thread, so a registered fd is always live. A failure
/// (the peer already gone) is ignored: the connection ends either way.
pub fn shutdown(fd: RawFd, half: Half) {
    let how = match half {
        Half::Read => libc::SHUT_RD,
        Half::Both => libc::SHUT_RDWR,
    };
    // SAFETY: shutdown(2) takes any integer and touches no memory of ours; on
    // a live socket fd (the contract above) it only changes that socket.
    unsafe { libc::shutdown(fd, how) };
}
