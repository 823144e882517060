//! TLS for upstream connections (rustls with the ring provider).
//!
//! Owns the client configuration — roots, protocol versions, ALPN — and the
//! server name a handshake verifies. It must not open sockets or read HTTP:
//! the client hands it a connected `TcpStream` through [`Connector`].

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The ALPN protocol offered: this client speaks HTTP/1.1 only, so a server
/// that would pick h2 must not (RFC 7301 §3.2; RFC 9113 §3.2).
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Everything needed to turn a TCP connection to one origin into TLS.
#[derive(Clone)]
pub struct Connector {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl Connector {
    /// `host` is the SNI name and the name the certificate must match; an IP
    /// address is verified against the certificate's IP SANs and sends no
    /// SNI (RFC 6066 §3 forbids literal addresses there). `ca_file` adds the
    /// PEM certificates of a private CA to the webpki roots.
    pub fn new(host: &str, ca_file: Option<&Path>) -> Result<Connector, String> {
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("invalid TLS server name {host:?}: {e}"))?;
        let config = client_config(ca_file)?;
        Ok(Connector {
            connector: TlsConnector::from(config),
            server_name,
        })
    }

    /// Runs the handshake over `tcp`. Errors are rustls' (certificate,
    /// protocol) or the socket's, as text.
    pub(crate) async fn connect(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        self.connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| e.to_string())
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// The client configuration: the ring provider installed explicitly (never a
/// process-wide default another crate might have set), TLS 1.2 and 1.3,
/// webpki roots plus `ca_file`, no client certificate, ALPN `http/1.1`.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        add_pem_roots(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// Adds every certificate of the PEM file at `path` to `roots`. A file with
/// no certificate is an error: a typo in `caFile` must not silently leave
/// the private CA untrusted.
fn add_pem_roots(roots: &mut RootCertStore, path: &Path) -> Result<(), String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("caFile {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("caFile {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("caFile {shown}: no PEM certificate found"));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("caFile {shown}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addresses_and_names_are_valid_server_names() {
        assert!(Connector::new("api.example.com", None).is_ok());
        assert!(Connector::new("127.0.0.1", None).is_ok());
        assert!(Connector::new("::1", None).is_ok());
        assert!(Connector::new("bad name", None).is_err());
    }

    #[test]
    fn alpn_is_http11_only() {
        let config = client_config(None).expect("default config builds");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn missing_or_empty_ca_file_is_an_error() {
        let missing = std::env::temp_dir().join("chat2api-no-such-ca.pem");
        assert!(client_config(Some(&missing)).is_err());
        let empty =
            std::env::temp_dir().join(format!("chat2api-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, b"not a certificate\n").expect("temp file");
        let err = client_config(Some(&empty)).expect_err("no certificate in file");
        assert!(err.contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_file(&empty);
    }
}
