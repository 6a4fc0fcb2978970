//! A failed TLS handshake as a sentence with its fix: the rustls error is found wherever the
//! driver wrapped it (in an `io::Error`, in the driver's own error).

use std::error::Error as StdError;
use std::io;

use rustls::{CertificateError, Error as TlsError};

use crate::config::TlsSettings;
use crate::stream::NoTlsAnswer;

/// What went wrong with TLS in `error` (a driver's error for a connection to `endpoint` made
/// with `tls`), and what fixes it; `None` when the error is not about TLS.
pub fn explain(
    error: &(dyn StdError + 'static),
    endpoint: &str,
    tls: &TlsSettings,
) -> Option<String> {
    let mut at: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(error) = at {
        if let Some(tls_error) = error.downcast_ref::<TlsError>() {
            return Some(sentence(tls_error, endpoint, tls));
        }
        if let Some(silence) = error.downcast_ref::<NoTlsAnswer>() {
            return Some(format!(
                "{endpoint} did not answer in TLS ({silence}); check that the port is the server's TLS port, or turn TLS off for it (sslmode=disable)"
            ));
        }
        // `io::Error::source` skips the error it wraps: look inside it instead.
        at = match error.downcast_ref::<io::Error>().and_then(|e| e.get_ref()) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => error.source(),
        };
    }
    None
}

fn sentence(error: &TlsError, endpoint: &str, tls: &TlsSettings) -> String {
    let field = &tls.field;
    match error {
        TlsError::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "the TLS certificate of {endpoint} is not signed by a CA ferry trusts ({}); set {field}'s sslrootcert to the CA that signed the server's certificate",
                tls.trust()
            ),
            CertificateError::NotValidForName => format!(
                "the TLS certificate of {endpoint} is not for the host name ferry connects to; connect by a name the certificate lists, or set sslmode=verify-ca to check only its CA"
            ),
            CertificateError::NotValidForNameContext { expected, presented } => format!(
                "the TLS certificate of {endpoint} is for {}, not {}; connect by a name the certificate lists, or set sslmode=verify-ca to check only its CA",
                if presented.is_empty() {
                    "no host name".to_string()
                } else {
                    presented.iter().map(|name| bare_name(name)).collect::<Vec<_>>().join(", ")
                },
                server_name_text(expected)
            ),
            CertificateError::Expired => format!(
                "the TLS certificate of {endpoint} has expired; renew it on the server"
            ),
            CertificateError::ExpiredContext { not_after, .. } => format!(
                "the TLS certificate of {endpoint} expired on {}; renew it on the server",
                date(not_after.as_secs())
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
                "the TLS certificate of {endpoint} is not valid yet; check this machine's clock and the certificate's dates"
            ),
            CertificateError::Revoked => format!(
                "the TLS certificate of {endpoint} is revoked; the server needs a new one"
            ),
            other => format!(
                "the TLS certificate of {endpoint} was refused ({other}); give the server a certificate signed by the CA in sslrootcert"
            ),
        },
        TlsError::AlertReceived(alert) => format!(
            "{endpoint} refused the TLS handshake ({alert:?}); if the server asks for a client certificate, set {field}'s sslcert and sslkey to one its CA signed"
        ),
        TlsError::InvalidMessage(_) | TlsError::InappropriateMessage { .. } => format!(
            "{endpoint} did not answer in TLS ({error}); check that the port is the server's TLS port, or turn TLS off for it (sslmode=disable)"
        ),
        TlsError::PeerIncompatible(_) => format!(
            "{endpoint} and ferry share no TLS version or cipher suite ({error}); ferry speaks TLS 1.2 and 1.3"
        ),
        other => format!("TLS to {endpoint} failed: {other}"),
    }
}

/// A name as rustls presents it (`DnsName("db.example")`, `IpAddress(127.0.0.1)`) without
/// its wrapping.
fn bare_name(name: &str) -> &str {
    match name.split_once('(') {
        Some((_, inner)) => inner.trim_end_matches(')').trim_matches('"'),
        None => name,
    }
}

fn server_name_text(name: &rustls::pki_types::ServerName<'_>) -> String {
    match name {
        rustls::pki_types::ServerName::DnsName(dns) => dns.as_ref().to_string(),
        rustls::pki_types::ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// `secs` since the epoch as a UTC date (`2020-01-01`).
fn date(secs: u64) -> String {
    // Howard Hinnant's days-to-civil.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_inside_io_errors_are_found() {
        let tls = TlsSettings::disabled("source");
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            TlsError::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let text = explain(&wrapped, "127.0.0.1:5432/db", &tls).unwrap();
        assert!(text.contains("not signed by a CA ferry trusts"), "{text}");
        assert!(explain(&io::Error::other("refused"), "x", &tls).is_none());
        assert_eq!(date(1_577_836_800), "2020-01-01 UTC");
        assert_eq!(date(1_709_164_800), "2024-02-29 UTC");
    }
}
