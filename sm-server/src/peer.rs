//! Which process is on the other end of a loopback connection, and whether it belongs to
//! an agent: so the admin token is refused from inside an agent's process tree even when
//! agents run unsandboxed (with the sandbox they cannot read the token at all).
//!
//! How: the connection's socket inode from `/proc/net/tcp` (or `tcp6`), the process that
//! holds it (the pid the `sm` CLI names in `X-Sm-Pid`, checked; else a scan of every
//! process's descriptors), then that process and its ancestors: one whose environment (as
//! it was when it started, which it cannot change afterwards) names a session of this
//! server is an agent's. What it cannot tell: a process that left its agent's tree (a
//! double fork reparents it to init) or a connection made through a proxy process.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use sm_lib::wire::env;

/// The two ends of the connection a request came on (a request extension set by
/// [`crate::serve_with`]), and what was found behind it, once looked for: the process on
/// the other end does not change for the connection's life, so a kept-alive client costs
/// one look.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client's address.
    pub peer: SocketAddr,
    /// The server's address.
    pub local: SocketAddr,
    /// The sessions named in the environments of the client process and its ancestors.
    pub behind: std::sync::Arc<std::sync::OnceLock<Vec<String>>>,
}

/// The sessions named (`SM_SESSION_ID`, or the Python manager's name for it) in the
/// environments of the process on the other end of the loopback connection `peer` →
/// `local` and of its ancestors, nearest first; empty when it cannot be told.
pub fn sessions_behind(
    peer: SocketAddr,
    local: SocketAddr,
    hinted_pid: Option<u32>,
) -> Vec<String> {
    let mut found = Vec::new();
    if !peer.ip().is_loopback() {
        return found;
    }
    let Some(inode) = socket_inode(peer, local) else {
        return found;
    };
    let needle = format!("socket:[{inode}]");
    let Some(pid) = hinted_pid
        .filter(|p| holds(*p, &needle))
        .or_else(|| holder_of(&needle))
    else {
        return found;
    };
    let mut current = pid;
    for _ in 0..64 {
        if let Some(id) = session_in_environment(current) {
            found.push(id);
        }
        match parent_of(current) {
            Some(parent) if parent > 1 && parent != current => current = parent,
            _ => break,
        }
    }
    found
}

/// The inode of the client's socket of the TCP connection `peer` → `local`.
fn socket_inode(peer: SocketAddr, local: SocketAddr) -> Option<u64> {
    let table = match peer.ip() {
        IpAddr::V4(_) => "/proc/net/tcp",
        IpAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table).ok()?;
    let (want_local, want_remote) = (encode(peer), encode(local));
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
        let (l, r, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
        (l.eq_ignore_ascii_case(&want_local) && r.eq_ignore_ascii_case(&want_remote))
            .then(|| inode.parse().ok())
            .flatten()
    })
}

/// An address as `/proc/net/tcp*` writes it: the address's 32-bit words in host order,
/// each as hex, then `:` and the port in hex.
fn encode(addr: SocketAddr) -> String {
    let words: Vec<u32> = match addr.ip() {
        IpAddr::V4(ip) => vec![u32::from_ne_bytes(ip.octets())],
        IpAddr::V6(ip) => ip
            .octets()
            .chunks(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    };
    let hex: String = words.iter().map(|w| format!("{w:08X}")).collect();
    format!("{hex}:{:04X}", addr.port())
}

/// Whether process `pid` has a descriptor that is `needle` (`socket:[inode]`).
fn holds(pid: u32, needle: &str) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == Path::new(needle)))
}

/// The process holding `needle`, found by looking at every process.
fn holder_of(needle: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| holds(*pid, needle))
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid …; comm may hold spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

fn session_in_environment(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|entry| {
        let entry = std::str::from_utf8(entry).ok()?;
        entry
            .strip_prefix(env::SESSION_ID)
            .or_else(|| entry.strip_prefix(env::LEGACY_SESSION_ID))
            .and_then(|rest| rest.strip_prefix('='))
            .map(str::to_string)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_the_kernel_writes_them() {
        let a: SocketAddr = "127.0.0.1:8420".parse().expect("addr");
        assert_eq!(encode(a), "0100007F:20E4");
    }

    #[test]
    fn this_test_process_is_found_behind_its_own_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let local = listener.local_addr().expect("addr");
        let client = std::net::TcpStream::connect(local).expect("connect");
        let peer = client.local_addr().expect("addr");
        let inode = socket_inode(peer, local).expect("the connection is in /proc/net/tcp");
        let needle = format!("socket:[{inode}]");
        assert!(holds(std::process::id(), &needle));
        assert_eq!(holder_of(&needle), Some(std::process::id()));
        // Whatever this test's environment names, it is found the same with and without the
        // pid hint.
        assert_eq!(
            sessions_behind(peer, local, None),
            sessions_behind(peer, local, Some(std::process::id()))
        );
    }
}
