//! Disk faults from outside the node's process, as a failing or full
//! disk shows itself to it: through its system calls.
//!
//! - A failing disk: the node runs with libfiu's POSIX preload (Debian
//!   `fiu-utils`), whose failure points make `pread`/`pwrite` (the calls
//!   foyer's device reads and writes with) fail with EIO while enabled.
//!   There is no device-mapper or block fault injection in this kernel,
//!   so the errors come from the C library's entry points instead.
//! - A full disk: the node's cache folder is a tmpfs of its own, mounted
//!   by the test (it runs as root) and filled to the last byte.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PRELOAD_DIR: &str = "/usr/lib/fiu";
/// EIO's number on Linux: libfiu sets errno to a failure point's
/// `failinfo`.
const EIO: i32 = 5;
/// The calls that reach a disk cache's data: foyer reads with `pread`
/// and writes with `pwrite` (libfiu's `pread` and `pwrite` points cover
/// `pread64` and `pwrite64` too, which Rust's std calls); the vectored
/// forms for completeness.
const DATA_CALLS: [&str; 4] = [
    "posix/io/rw/pread",
    "posix/io/rw/pwrite",
    "posix/io/rw/preadv",
    "posix/io/rw/pwritev",
];

/// The failure points of one process started with [`preload_env`].
pub struct FailurePoints {
    /// libfiu's control FIFOs are `<prefix>-<pid>.in` and `.out`.
    prefix: PathBuf,
}

impl FailurePoints {
    /// The control prefix lives in `dir`.
    pub fn new(dir: &Path) -> FailurePoints {
        let preload = Path::new(PRELOAD_DIR).join("fiu_posix_preload.so");
        assert!(
            preload.exists(),
            "{} is missing: the failing-disk fault needs libfiu (Debian: apt-get install fiu-utils)",
            preload.display()
        );
        FailurePoints {
            prefix: dir.join("fiu-ctrl"),
        }
    }

    /// The environment that loads libfiu into a process and opens its
    /// control FIFOs (what `fiu-run -x` sets).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "LD_PRELOAD",
                format!("{PRELOAD_DIR}/fiu_run_preload.so {PRELOAD_DIR}/fiu_posix_preload.so"),
            ),
            ("FIU_CTRL_FIFO", self.prefix.display().to_string()),
            ("FIU_ENABLE", String::new()),
        ]
    }

    /// Makes every data read and write of process `pid` fail with EIO.
    pub fn fail_disk_io(&self, pid: u32) {
        for call in DATA_CALLS {
            self.command(pid, &format!("enable name={call},failinfo={EIO}"));
        }
    }

    pub fn heal_disk_io(&self, pid: u32) {
        for call in DATA_CALLS {
            self.command(pid, &format!("disable name={call}"));
        }
    }

    /// One remote-control command; libfiu answers `-1` when it fails.
    /// The FIFOs block until the process's control thread opens them: a
    /// process that is gone or stopped fails the test after 10 s rather
    /// than hanging it.
    fn command(&self, pid: u32, command: &str) {
        let fifo = |end: &str| PathBuf::from(format!("{}-{pid}.{end}", self.prefix.display()));
        let (input, output, line) = (fifo("in"), fifo("out"), format!("{command}\n"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let reply = std::fs::write(&input, line)
                .and_then(|()| std::fs::read_to_string(&output))
                .map_err(|e| format!("{}: {e}", input.display()));
            let _ = tx.send(reply);
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(reply)) => assert_eq!(reply.trim(), "0", "libfiu refused `{command}`"),
            Ok(Err(e)) => panic!("libfiu's control FIFO of {pid}: {e}"),
            Err(_) => panic!("no answer from libfiu in process {pid} within 10 s (`{command}`)"),
        }
    }
}

/// A tmpfs mounted at a folder for as long as it lives.
pub struct Tmpfs {
    dir: PathBuf,
    filler: PathBuf,
}

impl Tmpfs {
    pub fn mount(dir: &Path, size_mib: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("the mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs at {} failed: the full-disk fault needs root",
            dir.display()
        );
        Tmpfs {
            dir: dir.to_path_buf(),
            filler: dir.join("filler"),
        }
    }

    /// Writes a file until the filesystem has no byte left; its size.
    pub fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(&self.filler).expect("the filler file");
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", self.dir.display()),
            }
        }
        written
    }

    /// Frees what [`Tmpfs::fill`] took.
    pub fn empty(&self) {
        std::fs::remove_file(&self.filler).expect("remove the filler file");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the node may still hold files open while it stops.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
