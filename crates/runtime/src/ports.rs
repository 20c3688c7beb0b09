//! Choosing a free TCP port before a listener is configured with it, so a workload keeps the same
//! URL across restarts (the port is stored in its RunConfig).

use std::net::TcpListener;

/// A port that is free on `host` right now (the OS picks it; someone else may still take it before
/// it is used, which the later bind then reports).
pub fn free_port(host: &str) -> std::io::Result<u16> {
    // Bracketed IPv6 literals are what URLs carry; the socket API wants them bare.
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let listener = TcpListener::bind((host, 0))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    #[test]
    fn picks_a_bindable_port() {
        let port = super::free_port("127.0.0.1").unwrap();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
