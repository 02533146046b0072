//! Small file systems of their own for the nodes' data, so that one can
//! fill up: each node's data directory lives on an ext4 file system in a
//! sparse image file, loop-mounted by the nemesis (root, `mkfs.ext4`,
//! `mount -o loop`). A `Fault::DiskFull` fills the victim's file system to
//! the last block with a ballast file and, when it heals, deletes it.
//!
//! Everything is unmounted and removed on drop (which also runs on Ctrl-C
//! and on a panic).

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::exec::run;

/// Default size of each node's file system, MiB (`--disk-mib`; a sparse
/// image: only what is written takes disk space, but a fill allocates it
/// all on the host's disk). A node's data directory
/// grows ~85 MB a minute at the nemesis's 2,000 tx/s (two fifths of it the
/// control group's cycle records): 2 GiB did not last a 30-minute run.
pub const DISK_MIB_DEFAULT: u64 = 6 << 10;

/// The ballast's last bytes are written in pieces this large, until the
/// file system refuses one (after the bulk was allocated at once).
const FILL_PIECE: usize = 4096;

/// Most pieces written after the bulk (a bound on the fill loop: the bulk
/// leaves at most a few megabytes).
const FILL_PIECES_MAX: usize = 1 << 20;

/// Name of the ballast file at the root of a node's file system.
const BALLAST: &str = "nemesis-ballast";

/// One node's file system.
struct Disk {
    image: PathBuf,
    mount: PathBuf,
    mounted: bool,
}

/// The nodes' file systems of one run.
pub struct Disks {
    disks: Vec<Disk>,
}

/// What filling a file system did.
#[derive(Debug, Clone, Copy)]
pub struct Fill {
    /// Bytes of ballast written.
    pub ballast: u64,
    /// Bytes still free after it (as `statvfs` sees them: 0 when full).
    pub free_after: u64,
}

fn free_bytes(path: &Path) -> anyhow::Result<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: `c` is a valid NUL-terminated path; `stat` is written by the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("statvfs {}", path.display()));
    }
    Ok(stat.f_bavail * stat.f_frsize)
}

impl Disks {
    /// Makes and mounts `nodes` file systems of `mib` MiB under `dir` (`disk-N.img`
    /// mounted on `disk-N/`); an error if the machine does not allow it
    /// (not root, no `mkfs.ext4`, no loop devices).
    pub fn create(dir: &Path, nodes: u64, mib: u64) -> anyhow::Result<Disks> {
        let mut disks = Disks { disks: Vec::new() };
        for id in 1..=nodes {
            let image = dir.join(format!("disk-{id}.img"));
            let mount = dir.join(format!("disk-{id}"));
            File::create(&image)
                .and_then(|f| f.set_len(mib << 20))
                .with_context(|| format!("making {}", image.display()))?;
            std::fs::create_dir_all(&mount)?;
            let mut disk = Disk {
                image,
                mount,
                mounted: false,
            };
            let image = disk.image.display().to_string();
            let target = disk.mount.display().to_string();
            // -m 0: no blocks reserved for root (the nemesis runs as root
            // and would otherwise fill those too, unevenly).
            let made = run("mkfs.ext4", &["-q", "-F", "-m", "0", &image])
                .and_then(|()| run("mount", &["-o", "loop", &image, &target]));
            match made {
                Ok(()) => disk.mounted = true,
                Err(e) => {
                    disks.disks.push(disk);
                    return Err(e);
                }
            }
            disks.disks.push(disk);
        }
        Ok(disks)
    }

    /// Node `id`'s data directory on its file system.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.disks[(id - 1) as usize].mount.join("data")
    }

    /// Fills node `id`'s file system: the free space allocated at once,
    /// then small writes until the file system refuses one.
    pub fn fill(&self, id: u64) -> anyhow::Result<Fill> {
        let mount = &self.disks[(id - 1) as usize].mount;
        let path = mount.join(BALLAST);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        let bulk = free_bytes(mount)?.saturating_sub(1 << 20);
        let mut ballast = 0;
        if bulk > 0 {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
            // SAFETY: a valid open descriptor; the range is within i64.
            let r = unsafe { libc::fallocate(fd, 0, 0, bulk as libc::off_t) };
            if r == 0 {
                ballast = bulk;
            }
        }
        let piece = [0xa5u8; FILL_PIECE];
        for _ in 0..FILL_PIECES_MAX {
            match file
                .write(&piece)
                .and_then(|n| file.sync_data().map(|()| n))
            {
                Ok(n) => ballast += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e).with_context(|| format!("filling {}", path.display())),
            }
        }
        Ok(Fill {
            ballast,
            free_after: free_bytes(mount)?,
        })
    }

    /// Deletes node `id`'s ballast (the fault heals).
    pub fn drain(&self, id: u64) -> anyhow::Result<()> {
        let path = self.disks[(id - 1) as usize].mount.join(BALLAST);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
}

impl Drop for Disks {
    fn drop(&mut self) {
        for disk in &mut self.disks {
            if disk.mounted {
                let target = disk.mount.display().to_string();
                // Lazy: a node that has not died yet may still hold a file.
                if run("umount", &[&target]).is_err() {
                    let _ = run("umount", &["-l", &target]);
                }
                disk.mounted = false;
            }
            let _ = std::fs::remove_file(&disk.image);
            let _ = std::fs::remove_dir(&disk.mount);
        }
    }
}
