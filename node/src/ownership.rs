//! Exclusive ownership of what a node runs on: its data directory (a
//! `flock` on `LOCK`, released by the kernel however the process ends, even
//! by kill -9) and its ports (each core binds the client and peer ports with
//! SO_REUSEPORT, which would let another process of the same user bind them
//! too and take half the connections: the node first checks that nobody
//! listens there).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file in a data directory; it holds the owner's pid.
pub const LOCK_FILE: &str = "LOCK";

#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    #[error(
        "data directory {dir} is in use by another settle process (pid {pid}, per {lock}): \
         stop it first or choose another --data-dir"
    )]
    DirInUse {
        dir: PathBuf,
        pid: String,
        lock: PathBuf,
    },
    #[error("locking {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the {what} address {addr} is already in use by another process: settle binds it on \
         every core (SO_REUSEPORT) and will not share it; stop that process or choose another"
    )]
    PortInUse {
        what: &'static str,
        addr: SocketAddr,
    },
    #[error("checking that the {what} address {addr} is free: {source}")]
    PortProbe {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Held for the node's life: while it exists no other process owns the
/// directory.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    pub path: PathBuf,
}

impl DirLock {
    /// Takes `dir/LOCK` exclusively, or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, OwnershipError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| OwnershipError::Lock {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor this function owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(error));
            }
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(OwnershipError::DirInUse {
                dir: dir.to_path_buf(),
                pid: if pid.is_empty() {
                    "unknown: it is starting".into()
                } else {
                    pid.into()
                },
                lock: path,
            });
        }
        file.set_len(0).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DirLock { _file: file, path })
    }
}

/// How long the probe of a busy address waits for a listener to answer.
const PORT_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long an address must stay taken to be refused: the sockets of a
/// process killed a moment ago can outlive it briefly (io_uring tears a
/// dead process's rings down in a kernel worker, and a socket one of its
/// requests still holds accepts connections until then).
const PORT_TAKEN_FOR: std::time::Duration = std::time::Duration::from_secs(3);

/// Refuses an address another process listens on. Our own sockets bind it
/// with SO_REUSEPORT afterwards; a plain bind here fails while any socket
/// listens there, but also while connections of a previous run of this
/// node linger on the port (after kill -9): then a connection attempt tells
/// the two apart, as only a listener accepts one, and a listener must stay
/// for [`PORT_TAKEN_FOR`] (a killed node's may take a moment to go). (Two
/// nodes starting in the same instant can both pass; the data directory
/// lock is the hard guarantee.)
pub fn ensure_port_free(what: &'static str, addr: SocketAddr) -> Result<(), OwnershipError> {
    let since = std::time::Instant::now();
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(probe) => {
                drop(probe);
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let mut target = addr;
                if target.ip().is_unspecified() {
                    target.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                if std::net::TcpStream::connect_timeout(&target, PORT_PROBE_TIMEOUT).is_err() {
                    return Ok(());
                }
                if since.elapsed() >= PORT_TAKEN_FOR {
                    return Err(OwnershipError::PortInUse { what, addr });
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(source) => return Err(OwnershipError::PortProbe { what, addr, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_owner_of_a_directory_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let pid = std::fs::read_to_string(&first.path).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        // flock is per open file: a second open, even in this process, is
        // refused like another process would be.
        let second = DirLock::acquire(dir.path()).unwrap_err();
        let message = second.to_string();
        assert!(
            matches!(second, OwnershipError::DirInUse { .. }),
            "{message}"
        );
        assert!(
            message.contains(&std::process::id().to_string()),
            "{message}"
        );
        drop(first);
        DirLock::acquire(dir.path()).expect("free once the owner is gone");
    }

    #[test]
    fn a_port_someone_listens_on_is_refused() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let error = ensure_port_free("client", addr).unwrap_err();
        assert!(matches!(error, OwnershipError::PortInUse { .. }), "{error}");
        drop(taken);
        ensure_port_free("client", addr).expect("free once closed");
    }
}
