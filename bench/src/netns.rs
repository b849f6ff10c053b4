//! A private network namespace for the bench: Janus 1.1.2's ICE skips loopback
//! interfaces, so the servers and the clients run in a namespace of their own
//! holding `lo` and a veth pair [`IFACE`] (with [`IP`]/24) ↔ `fqb1` (no address),
//! with a default route through [`IFACE`] so local-IP detection finds [`IP`].
//! Nothing in it can reach another namespace's network.

use std::process::Command;

/// The address servers and clients bind to inside the namespace.
pub const IP: &str = "10.99.0.1";
/// The interface holding [`IP`] (Janus's `ice_enforce_list`).
pub const IFACE: &str = "fqb0";

fn sh(cmd: &str) -> anyhow::Result<()> {
    let st = Command::new("sh").arg("-c").arg(cmd).status()?;
    anyhow::ensure!(st.success(), "namespace setup failed: {cmd}");
    Ok(())
}

/// Moves this process into a new network namespace (`unshare(CLONE_NEWNET)`; needs
/// root or CAP_SYS_ADMIN) and sets it up. Call it before any other thread starts:
/// the namespace is per thread, and threads and children created afterwards
/// inherit it.
///
/// # Errors
/// `unshare` refused (not root), or `ip` failed.
pub fn enter() -> anyhow::Result<()> {
    // SAFETY: unshare takes no pointers; it only changes this thread's namespaces.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    anyhow::ensure!(rc == 0, "unshare(CLONE_NEWNET): {} (run as root)", std::io::Error::last_os_error());
    sh("ip link set lo up")?;
    sh(&format!("ip link add {IFACE} type veth peer name fqb1"))?;
    sh(&format!("ip addr add {IP}/24 dev {IFACE}"))?;
    sh(&format!("ip link set {IFACE} up && ip link set fqb1 up"))?;
    sh(&format!("ip route add default dev {IFACE}"))?;
    Ok(())
}
