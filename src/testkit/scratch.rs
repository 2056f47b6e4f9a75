//! Scratch directories for tests: every one a test process asks for lies
//! under its own root, `$TMPDIR/adshard-test-<pid>`, and the first request
//! in a process removes the roots of test processes that are gone. Test
//! runs used to leave a directory per server, spool and Cassandra node in
//! the temp dir for good (thousands after a day of runs); now what is left
//! is at most the roots of runs still going or killed since the last one.

use std::path::{Path, PathBuf};
use std::sync::Once;

/// `$TMPDIR/adshard-test-<this pid>/<name>` (not created, not emptied).
pub fn dir(name: &str) -> PathBuf {
    static SWEPT: Once = Once::new();
    SWEPT.call_once(|| sweep(&std::env::temp_dir(), std::process::id()));
    root(&std::env::temp_dir(), std::process::id()).join(name)
}

fn root(tmp: &Path, pid: u32) -> PathBuf {
    tmp.join(format!("adshard-test-{pid}"))
}

/// Removes the roots under `tmp` of processes other than `me` that no
/// longer run (no `/proc/<pid>`). A pid taken since by another process
/// keeps its root until that one ends too.
fn sweep(tmp: &Path, me: u32) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("adshard-test-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != me && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_of_finished_processes_are_removed_and_live_ones_kept() {
        let tmp = dir("sweep-test");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        // A pid above the kernel's limit (4194304) never runs.
        let gone = root(&tmp, 4_194_400).join("spool-0");
        std::fs::create_dir_all(&gone).unwrap();
        std::fs::write(gone.join("shard-0-0000000001.spool"), b"x").unwrap();
        let live = root(&tmp, std::process::id()).join("spool-0");
        std::fs::create_dir_all(&live).unwrap();
        let parent = root(&tmp, 1);
        std::fs::create_dir_all(&parent).unwrap();
        let other = tmp.join("adshard-test-spool-77-0");
        std::fs::create_dir_all(&other).unwrap();
        sweep(&tmp, 4_194_401);
        assert!(!root(&tmp, 4_194_400).exists());
        assert!(live.exists(), "this process runs");
        assert!(parent.exists(), "pid 1 runs");
        assert!(other.exists(), "not a root of ours");
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
