//! Opening PostgreSQL connections, with TLS (rustls on ring) as the URL
//! asks.
//!
//! `DATABASE_URL` takes libpq's TLS parameters (PostgreSQL docs, libpq
//! § 34.19 "SSL Support"):
//!
//! | `sslmode` | TLS | server certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default, as libpq) | if the server offers it, else plain | no |
//! | `require` | always | no; with `sslrootcert`, as `verify-ca` (libpq's rule) |
//! | `verify-ca` | always | chain up to a trusted CA, host name not checked |
//! | `verify-full` | always | chain and host name (DNS name or IP address in the certificate) |
//!
//! `sslrootcert=<path>` names a PEM file of trusted CA certificates (for a
//! self-signed server certificate, the certificate itself). Without it,
//! `verify-ca` and `verify-full` trust the Mozilla root store
//! (`webpki-roots`), which covers managed servers with publicly issued
//! certificates. Client certificates (`sslcert`, `sslkey`) are not
//! supported and are refused by name.
//!
//! diesel-async connects with tokio-postgres; here the URL's TLS part is
//! taken out (tokio-postgres knows only `disable`/`prefer`/`require`), the
//! rest is parsed by tokio-postgres, and the connection is made with
//! `tokio-postgres-rustls`.

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// How a connection uses TLS: libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// `disable`: plain TCP.
    Disable,
    /// `prefer`: TLS when the server offers it, the certificate unchecked.
    Prefer,
    /// `require`: TLS, the certificate unchecked (checked as `verify-ca`
    /// when `sslrootcert` is given).
    Require,
    /// `verify-ca`: TLS, the certificate chain checked, not the host name.
    VerifyCa,
    /// `verify-full`: TLS, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's spelling (`disable`, `allow` is refused, `prefer`,
    /// `require`, `verify-ca`, `verify-full`).
    pub fn parse(value: &str) -> Result<Self, DbUrlError> {
        match value {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(DbUrlError(format!(
                "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
            ))),
        }
    }

    /// libpq's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// `DATABASE_URL` cannot be used. The message never contains the URL's
/// password.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DbUrlError(pub String);

/// A parsed `DATABASE_URL`: where to connect and how (TLS mode, trusted
/// CAs). Cheap to clone (the TLS settings are shared).
#[derive(Clone)]
pub struct DbTarget {
    pg: tokio_postgres::Config,
    mode: SslMode,
    root_cert: Option<PathBuf>,
    tls: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for DbTarget {
    // No password, no URL: host, port, database, user and the TLS mode.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbTarget")
            .field("hosts", &self.pg.get_hosts())
            .field("ports", &self.pg.get_ports())
            .field("dbname", &self.pg.get_dbname())
            .field("user", &self.pg.get_user())
            .field("sslmode", &self.mode.as_str())
            .field("sslrootcert", &self.root_cert)
            .finish()
    }
}

/// Parameters of libpq's TLS family that are not supported: named in the
/// error instead of tokio-postgres's "unknown option".
const UNSUPPORTED: &[&str] = &["sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir"];

impl DbTarget {
    /// Parses `url` (`postgres://user:password@host:port/db?sslmode=…&sslrootcert=…`)
    /// and, for a mode that checks certificates, reads the CA file.
    ///
    /// Errors: a malformed URL, an unknown `sslmode`, an unsupported
    /// parameter, an unreadable CA file or one without a certificate; the
    /// message names the parameter, never the password.
    pub fn parse(url: &str) -> Result<Self, DbUrlError> {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (url, ""),
        };
        let mut mode = SslMode::Prefer;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for segment in query.split('&').filter(|s| !s.is_empty()) {
            let (key, value) = url::form_urlencoded::parse(segment.as_bytes())
                .next()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .unwrap_or_default();
            match key.as_str() {
                "sslmode" => mode = SslMode::parse(&value)?,
                "sslrootcert" => root_cert = Some(PathBuf::from(value)),
                k if UNSUPPORTED.contains(&k) => {
                    return Err(DbUrlError(format!(
                        "DATABASE_URL parameter {k} is not supported (client certificates are not)"
                    )))
                }
                _ => kept.push(segment),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut pg = tokio_postgres::Config::from_str(&rest)
            .map_err(|e| DbUrlError(format!("DATABASE_URL is not a valid PostgreSQL URL: {e}")))?;
        pg.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        let tls = match mode {
            SslMode::Disable => None,
            _ => Some(Arc::new(client_config(mode, root_cert.as_deref())?)),
        };
        Ok(Self {
            pg,
            mode,
            root_cert,
            tls,
        })
    }

    /// The TLS mode asked for.
    pub fn ssl_mode(&self) -> SslMode {
        self.mode
    }

    /// Opens one connection.
    ///
    /// Errors: [`ConnectionError::BadConnection`] with tokio-postgres's
    /// message, e.g. `error performing TLS handshake: invalid peer
    /// certificate: UnknownIssuer` for a server whose certificate the CA
    /// file does not vouch for.
    pub async fn connect(&self) -> Result<AsyncPgConnection, ConnectionError> {
        let bad = |e: tokio_postgres::Error| ConnectionError::BadConnection(with_causes(&e));
        match &self.tls {
            None => {
                let (client, connection) =
                    self.pg.connect(tokio_postgres::NoTls).await.map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
            Some(tls) => {
                let make = tokio_postgres_rustls::MakeRustlsConnect::new(ClientConfig::clone(tls));
                let (client, connection) = self.pg.connect(make).await.map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
        }
    }
}

/// `error: cause: cause…`: tokio-postgres's own message names only the
/// step ("error performing TLS handshake"), its causes say why.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls settings for `mode` (not `disable`).
fn client_config(mode: SslMode, root_cert: Option<&Path>) -> Result<ClientConfig, DbUrlError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| DbUrlError(format!("TLS settings: {e}")))?;
    let verify_chain = match mode {
        SslMode::VerifyCa | SslMode::VerifyFull => true,
        SslMode::Require => root_cert.is_some(),
        SslMode::Prefer | SslMode::Disable => false,
    };
    if !verify_chain {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth());
    }
    let roots = Arc::new(root_store(root_cert)?);
    if mode == SslMode::VerifyFull {
        return Ok(builder.with_root_certificates(roots).with_no_client_auth());
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| DbUrlError(format!("TLS settings: {e}")))?;
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
        .with_no_client_auth())
}

/// The CAs in `path` (PEM), or the Mozilla roots without one.
fn root_store(path: Option<&Path>) -> Result<RootCertStore, DbUrlError> {
    let Some(path) = path else {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| DbUrlError(format!("sslrootcert {shown} cannot be read: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DbUrlError(format!("sslrootcert {shown} is not a PEM file: {e}")))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(DbUrlError(format!(
            "sslrootcert {shown} holds no usable CA certificate"
        )));
    }
    Ok(roots)
}

/// `verify-ca`: the chain is checked by webpki; a certificate that is valid
/// but names another host is accepted (libpq's `verify-ca`).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last, so a name error
        // means the chain is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` / `require` without a CA: encrypted, the certificate not
/// checked (libpq's behaviour); the handshake signatures still are.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_unknown_ones_are_named() {
        for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            let target = DbTarget::parse(&format!("postgres://u:pw@h/db?sslmode={mode}")).unwrap();
            assert_eq!(target.ssl_mode().as_str(), mode);
        }
        assert_eq!(
            DbTarget::parse("postgres://h/db").unwrap().ssl_mode(),
            SslMode::Prefer
        );
        let err = DbTarget::parse("postgres://u:hunter2@h/db?sslmode=allow").unwrap_err();
        assert!(err.0.contains("sslmode=allow"), "{err}");
        let err = DbTarget::parse("postgres://u:hunter2@h/db?sslcert=/x").unwrap_err();
        assert!(err.0.contains("sslcert"), "{err}");
        assert!(!err.0.contains("hunter2"));
    }

    #[test]
    fn other_parameters_reach_tokio_postgres() {
        let target =
            DbTarget::parse("postgres://u:hunter2@h:6543/db?connect_timeout=5&sslmode=disable")
                .unwrap();
        assert_eq!(
            target.pg.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(5))
        );
        assert_eq!(target.pg.get_ports(), &[6543]);
        let shown = format!("{target:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(DbTarget::parse("postgres://h/db?bogus=1").is_err());
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let err =
            DbTarget::parse("postgres://h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
                .unwrap_err();
        assert!(err.0.contains("/nonexistent/ca.pem"), "{err}");
    }
}
