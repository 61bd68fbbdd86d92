//! Email over SMTP (`lettre`, tokio and rustls): one connection per message, secured as
//! `SMTP_TLS` says (STARTTLS required, TLS from the first byte, or none in development).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::SendError;
use crate::settings::{SmtpSettings, SmtpTls};

/// Sends messages through one SMTP server. `Debug` shows the server, never the password.
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    server: String,
}

impl std::fmt::Debug for EmailSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSender").field("server", &self.server).finish_non_exhaustive()
    }
}

impl EmailSender {
    /// The transport of `smtp`; each SMTP command times out after `timeout`.
    pub fn new(smtp: &SmtpSettings, timeout: Duration) -> Result<EmailSender, String> {
        let builder = match smtp.tls {
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host),
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host),
            SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str())),
        }
        .map_err(|e| format!("SMTP_HOST {}: {e}", smtp.host))?;
        let mut builder = builder.port(smtp.port).timeout(Some(timeout));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose_secret().to_string()));
        }
        let from = smtp.from.parse::<Mailbox>().map_err(|e| format!("SMTP_FROM: {e}"))?;
        Ok(EmailSender { transport: builder.build(), from, server: format!("{}:{}", smtp.host, smtp.port) })
    }

    /// `host:port`, for logs.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends one plain-text message to every recipient (one envelope).
    pub async fn send(&self, to: &[String], subject: &str, body: &str) -> Result<(), SendError> {
        let mut builder = Message::builder().from(self.from.clone()).subject(subject).header(ContentType::TEXT_PLAIN);
        for recipient in to {
            let mailbox = recipient
                .parse::<Mailbox>()
                .map_err(|_| SendError::Permanent(format!("{recipient} is not an address")))?;
            builder = builder.to(mailbox);
        }
        let message = builder.body(body.to_string()).map_err(|e| SendError::Permanent(format!("message: {e}")))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            // 5xx answers are final (an unknown recipient, a refused sender); connection
            // failures, timeouts and 4xx answers may pass.
            let text = format!("SMTP {}: {e}", self.server);
            if e.is_permanent() {
                SendError::Permanent(text)
            } else {
                SendError::Transient(text)
            }
        })
    }
}
