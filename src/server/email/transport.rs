//! Delivery of one stored email through the configured transport
//! ([`EmailTransport`]): SMTP (lettre, async on tokio, rustls), `.eml` files
//! in a directory, or a log line.

use crate::server::config::{EmailConfig, EmailTransport, SmtpTls};
use crate::server::email::worker::OutboxEmail;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;

/// Why one delivery failed. Messages name the failure, never a secret
/// (no password, no body): they go into `email_outbox.last_error`.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The stored recipient is not a valid address (permanent).
    #[error("invalid recipient address")]
    BadRecipient,
    /// The message could not be assembled (permanent).
    #[error("cannot build the message: {0}")]
    Build(String),
    /// The SMTP server refused the message with a 5xx reply (permanent).
    #[error("SMTP server rejected the message: {0}")]
    Rejected(String),
    /// Connection, TLS, timeout or a 4xx reply: worth retrying.
    #[error("SMTP delivery failed: {0}")]
    Smtp(String),
    /// The whole delivery took longer than `EMAIL_SEND_TIMEOUT_SECONDS`.
    #[error("delivery timed out after {0} s")]
    Timeout(u64),
    /// The `.eml` file could not be written (`EMAIL_TRANSPORT=file`).
    #[error("cannot write the email file: {0}")]
    File(String),
}

impl SendError {
    /// True when retrying cannot help: the row is marked `failed` at once.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SendError::BadRecipient | SendError::Build(_) | SendError::Rejected(_)
        )
    }
}

#[derive(Clone)]
enum Inner {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(PathBuf, AsyncFileTransport<Tokio1Executor>),
    Log,
}

/// The configured transport with the sender address; cheap to build and to
/// clone (SMTP connections are opened per delivery).
#[derive(Clone)]
pub struct Mailer {
    inner: Inner,
    from: Mailbox,
    timeout_seconds: u64,
}

impl Mailer {
    /// Builds the transport `config` describes (already validated when the
    /// configuration was parsed, so this cannot fail).
    pub fn new(config: &EmailConfig) -> Self {
        let timeout = Duration::from_secs(config.send_timeout_seconds);
        let inner = match &config.transport {
            EmailTransport::Smtp(smtp) => {
                let tls = match &smtp.tls {
                    SmtpTls::None => Tls::None,
                    SmtpTls::StartTls(params) => Tls::Required(params.clone()),
                    SmtpTls::Tls(params) => Tls::Wrapper(params.clone()),
                };
                let mut builder =
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str())
                        .port(smtp.port)
                        .tls(tls)
                        .timeout(Some(timeout));
                if let Some(credentials) = &smtp.credentials {
                    builder = builder.credentials(Credentials::new(
                        credentials.username.clone(),
                        credentials.password().to_owned(),
                    ));
                }
                Inner::Smtp(builder.build())
            }
            EmailTransport::File(dir) => Inner::File(dir.clone(), AsyncFileTransport::new(dir)),
            EmailTransport::Log => Inner::Log,
        };
        Self {
            inner,
            from: config.from.clone(),
            timeout_seconds: config.send_timeout_seconds,
        }
    }

    /// Checks that email can leave, sending nothing (the pre-flight
    /// `check-config`): SMTP connects, negotiates TLS as configured and logs
    /// in when credentials are set; the file transport's directory is
    /// writable; the log transport always passes. Returns what was checked.
    ///
    /// Errors: a description without the password (lettre's messages carry
    /// the server's answer, never the credentials).
    pub async fn check(&self) -> Result<String, String> {
        let timeout = Duration::from_secs(self.timeout_seconds);
        match &self.inner {
            Inner::Smtp(transport) => {
                match tokio::time::timeout(timeout, transport.test_connection()).await {
                    Ok(Ok(true)) => Ok("the SMTP server accepted a connection".to_owned()),
                    Ok(Ok(false)) => Err("the SMTP server refused the connection".to_owned()),
                    Ok(Err(e)) => Err(format!("SMTP: {e}")),
                    Err(_) => Err(format!("SMTP: no answer within {} s", self.timeout_seconds)),
                }
            }
            Inner::File(dir, _) => std::fs::create_dir_all(dir)
                .and_then(|()| {
                    let probe = dir.join(".rsolv-write-check");
                    std::fs::write(&probe, b"")?;
                    std::fs::remove_file(probe)
                })
                .map(|()| format!("{} is writable (EMAIL_TRANSPORT=file)", dir.display()))
                .map_err(|e| format!("{} is not writable: {e}", dir.display())),
            Inner::Log => Ok("emails are only logged (EMAIL_TRANSPORT=log)".to_owned()),
        }
    }

    /// Delivers `email` once, within `EMAIL_SEND_TIMEOUT_SECONDS`.
    ///
    /// Errors: [`SendError`]; [`SendError::is_permanent`] tells whether a
    /// retry can help.
    pub async fn send(&self, email: &OutboxEmail) -> Result<(), SendError> {
        let message = build_message(&self.from, email)?;
        let delivery = async {
            match &self.inner {
                Inner::Smtp(transport) => transport.send(message).await.map(drop).map_err(|e| {
                    if e.is_permanent() {
                        SendError::Rejected(e.to_string())
                    } else {
                        SendError::Smtp(e.to_string())
                    }
                }),
                Inner::File(dir, transport) => {
                    std::fs::create_dir_all(dir).map_err(|e| SendError::File(e.to_string()))?;
                    let file_id = transport
                        .send(message)
                        .await
                        .map_err(|e| SendError::File(e.to_string()))?;
                    tracing::info!(
                        outbox_id = email.id,
                        kind = %email.kind,
                        file = %dir.join(format!("{file_id}.eml")).display(),
                        "email written to a file (EMAIL_TRANSPORT=file)"
                    );
                    Ok(())
                }
                Inner::Log => {
                    // Never the body: it may carry a confirmation or reset token.
                    tracing::info!(
                        outbox_id = email.id,
                        kind = %email.kind,
                        to = %email.to_address,
                        subject = %email.subject.as_deref().unwrap_or_default(),
                        "email not sent (EMAIL_TRANSPORT=log)"
                    );
                    Ok(())
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(self.timeout_seconds), delivery)
            .await
            .map_err(|_| SendError::Timeout(self.timeout_seconds))?
    }
}

/// Assembles the MIME message: `multipart/alternative` with the text and
/// HTML parts, and a `Message-ID` derived from the idempotency key, so a
/// rare second delivery (see the worker's at-least-once note) carries the
/// same id and mail clients can fold the two.
///
/// Errors: [`SendError::BadRecipient`], [`SendError::Build`].
pub fn build_message(from: &Mailbox, email: &OutboxEmail) -> Result<Message, SendError> {
    let to: Mailbox = email
        .to_address
        .parse()
        .map_err(|_| SendError::BadRecipient)?;
    let digest = Sha256::digest(email.idempotency_key.as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    let message_id = format!("<{hex}.{}@{}>", email.id, from.email.domain());
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(email.subject.as_deref().unwrap_or_default())
        .message_id(Some(message_id))
        .multipart(MultiPart::alternative_plain_html(
            email.text_body.clone().unwrap_or_default(),
            email.html_body.clone().unwrap_or_default(),
        ))
        .map_err(|e| SendError::Build(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn row(id: i64, to: &str, attempts: i32) -> OutboxEmail {
        OutboxEmail {
            id,
            customer_id: Some(1),
            kind: "welcome".into(),
            to_address: to.into(),
            subject: Some("Welcome to RSOLV".into()),
            text_body: Some("Hello".into()),
            html_body: Some("<p>Hello</p>".into()),
            idempotency_key: "welcome:1".into(),
            status: "sending".into(),
            attempts,
            next_attempt_at: Utc::now(),
            locked_until: None,
            last_error: None,
            created_at: Utc::now(),
            sent_at: None,
            notification: None,
        }
    }

    fn message_id(message: &Message) -> String {
        let raw = String::from_utf8(message.formatted()).unwrap();
        raw.lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .unwrap()
            .to_owned()
    }

    #[test]
    fn every_attempt_carries_the_same_message_id_and_both_parts() {
        let from: Mailbox = "RSOLV <no-reply@rsolv.local>".parse().unwrap();
        let first = build_message(&from, &row(9, "ada@example.com", 1)).unwrap();
        let retry = build_message(&from, &row(9, "ada@example.com", 2)).unwrap();
        let id = message_id(&first);
        assert_eq!(id, message_id(&retry));
        assert!(
            id.starts_with('<') && id.ends_with(".9@rsolv.local>"),
            "{id}"
        );
        let raw = String::from_utf8(first.formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
    }

    #[test]
    fn a_malformed_recipient_fails_permanently() {
        let from: Mailbox = "no-reply@rsolv.local".parse().unwrap();
        let err = build_message(&from, &row(1, "not an address", 1)).unwrap_err();
        assert!(matches!(err, SendError::BadRecipient));
        assert!(err.is_permanent());
        assert!(!SendError::Smtp("connection refused".into()).is_permanent());
        assert!(!SendError::Timeout(30).is_permanent());
    }
}
