//! Free loopback ports for the children both tools start.

use std::net::{SocketAddr, TcpListener};

/// A free loopback address: bind port 0, read the address, release it. Another process could
/// take it before the child binds it; the child then fails to start and its log says so.
pub fn free_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// The port of [`free_addr`].
pub fn free_port() -> Result<u16, String> {
    free_addr().map(|addr| addr.port())
}
