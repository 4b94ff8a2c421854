//! TLS for every program: the files a certificate lives in, the rustls
//! configurations made from them, and a TLS session over a non-blocking
//! socket ([`TlsStream`]).
//!
//! `serve` terminates TLS on `tls://` listeners, `send` and `bench` speak it
//! as clients. All three load PEM files the same way, fail with one line
//! naming the file ([`TlsError`]), and use one crypto provider: rustls's
//! `ring`, which builds with nothing but a C compiler (`aws-lc-rs`, rustls's
//! default, needs CMake as well). No OpenSSL is linked.
//!
//! A configuration is made once and shared (`Arc`) by every session that
//! uses it; the server makes a new one on `SIGHUP` and hands it to new
//! connections only (see `serve::tls`).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

mod session;
mod subject;

pub use session::TlsStream;
pub use subject::common_name;

/// The crypto provider every configuration uses: `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS versions offered and accepted: 1.3 and 1.2.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// What a TLS server needs: its certificate chain and key, and the CA that
/// client certificates must be signed by, when they are required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    /// PEM: the server's certificate first, then the chain up to the root.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// PEM: the CAs a client certificate must chain to; `None`: no client
    /// certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

/// How a TLS client checks the server and proves who it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFiles {
    /// PEM: the CAs the server's certificate must chain to; `None`: the
    /// system's roots.
    pub ca: Option<PathBuf>,
    /// A client certificate and its key, when the server asks for one.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Accept any server certificate (no verification at all).
    pub insecure: bool,
}

/// A TLS file that cannot be used, or files that do not fit together.
#[derive(Debug)]
pub enum TlsError {
    /// A file is missing, unreadable, not PEM, or holds nothing usable.
    File {
        /// `certificate`, `private key`, `client CA`, `CA`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the combination (a key that does not match the
    /// certificate, a CA file with no usable certificate).
    Rejected {
        /// The files concerned, as the user named them.
        files: String,
        /// rustls's reason.
        reason: String,
    },
    /// `--tls-insecure` was not given and the system has no CA certificates.
    NoRoots,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::File { what, path, reason } => {
                write!(f, "cannot use TLS {what} {}: {reason}", path.display())
            }
            TlsError::Rejected { files, reason } => write!(f, "cannot use {files}: {reason}"),
            TlsError::NoRoots => f.write_str(
                "no CA certificates found on this system (give --tls-ca FILE, or --tls-insecure)",
            ),
        }
    }
}

impl std::error::Error for TlsError {}

fn file_error(what: &'static str, path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::File {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Why a PEM file could not be read, in plain words.
fn pem_reason(err: &rustls::pki_types::pem::Error) -> String {
    match err {
        rustls::pki_types::pem::Error::Io(io) => crate::net::os_reason(io),
        other => format!("not valid PEM ({other})"),
    }
}

/// Every certificate in a PEM file, in order; at least one.
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| file_error(what, path, pem_reason(&err)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| file_error(what, path, pem_reason(&err)))?;
    if certs.is_empty() {
        return Err(file_error(
            what,
            path,
            "no certificate in it (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| match err {
        rustls::pki_types::pem::Error::NoItemsFound => file_error(
            "private key",
            path,
            "no private key in it (expected -----BEGIN PRIVATE KEY-----, RSA or EC)",
        ),
        other => file_error("private key", path, pem_reason(&other)),
    })
}

fn load_roots(path: &Path, what: &'static str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, what)? {
        roots
            .add(cert)
            .map_err(|err| file_error(what, path, format!("unusable certificate ({err})")))?;
    }
    Ok(roots)
}

/// A server configuration from `files`: read them all, check that they fit.
pub fn server_config(files: &ServerFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(&files.cert, "certificate")?;
    let key = load_key(&files.key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(VERSIONS)
        .map_err(|err| TlsError::Rejected {
            files: "the TLS versions".into(),
            reason: err.to_string(),
        })?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let roots = load_roots(ca, "client CA")?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|err| file_error("client CA", ca, err))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|err| TlsError::Rejected {
            files: format!(
                "TLS certificate {} with key {}",
                files.cert.display(),
                files.key.display()
            ),
            reason: err.to_string(),
        })?;
    Ok(Arc::new(config))
}

/// A client configuration: the roots to verify the server with (or none
/// at all with `insecure`), and a client certificate when given.
pub fn client_config(files: &ClientFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(VERSIONS)
        .map_err(|err| TlsError::Rejected {
            files: "the TLS versions".into(),
            reason: err.to_string(),
        })?;
    let builder = if files.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
    } else {
        let roots = match &files.ca {
            Some(ca) => load_roots(ca, "CA")?,
            None => system_roots()?,
        };
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|err| TlsError::Rejected {
                files: "the CA certificates".into(),
                reason: err.to_string(),
            })?;
        builder.with_webpki_verifier(verifier)
    };
    let config = match &files.identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert, "certificate")?, load_key(key)?)
            .map_err(|err| TlsError::Rejected {
                files: format!(
                    "TLS certificate {} with key {}",
                    cert.display(),
                    key.display()
                ),
                reason: err.to_string(),
            })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The system's CA certificates (`/etc/ssl/certs` and the like).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    for err in &found.errors {
        log::debug!("system CA certificates: {err}");
    }
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError::NoRoots);
    }
    Ok(roots)
}

/// The name a client asks for (SNI) and checks the certificate against: a
/// DNS name or an IP address.
pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_string()).map_err(|_| {
        format!("invalid TLS server name '{name}' (expected a DNS name or an IP address)")
    })
}

/// `--tls-insecure`: every certificate is accepted, but the handshake's
/// signatures are still checked (against whatever key the server sent).
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Whether an I/O error is a TLS failure, as [`TlsStream`] reports them: a
/// handshake that failed, an alert, a corrupt record, or a stream cut
/// short (the peer closed without `close_notify`; plain sockets never say
/// `UnexpectedEof`).
pub fn is_tls_failure(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::UnexpectedEof
        || err
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>())
}
