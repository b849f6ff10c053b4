//! The private network namespace of the browser tests (`tests/browser`, `tests/staff`):
//! the test binary re-executes itself under `unshare -n`, then brings up `lo` and a
//! veth pair 10.99.0.1/24 ↔ 10.99.0.2/24 with a default route via 10.99.0.2 (Firefox
//! gathers nothing without one). The server binds and advertises [`NS_IP`]; no packet
//! can leave the namespace.

use std::process::Command;

/// The server's address inside the namespace.
pub const NS_IP: &str = "10.99.0.1";

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().expect("sh runs");
    assert!(st.success(), "namespace setup failed: {cmd}");
}

/// Outside the namespace: runs this binary again inside a new one and exits with its
/// status. Inside: sets the namespace's network up and returns.
pub fn enter() {
    if std::env::var_os("FQ_IN_NETNS").is_none() {
        let exe = std::env::current_exe().expect("own path");
        let st = Command::new("unshare")
            .arg("-n")
            .arg("--")
            .arg(exe)
            .env("FQ_IN_NETNS", "1")
            .status()
            .expect("unshare runs (needs root or user namespaces)");
        std::process::exit(st.code().unwrap_or(1));
    }
    sh("ip link set lo up");
    sh("ip link add fq0 type veth peer name fq1");
    sh(&format!("ip addr add {NS_IP}/24 dev fq0"));
    sh("ip addr add 10.99.0.2/24 dev fq1");
    sh("ip link set fq0 up && ip link set fq1 up");
    sh("ip route add default via 10.99.0.2");
}
