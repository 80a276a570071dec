//! TLS for the team server and its clients: rustls with the ring provider (no OpenSSL,
//! no C toolchain beyond what ring needs).

/// Installs ring as the process's rustls crypto provider; harmless when already done.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
