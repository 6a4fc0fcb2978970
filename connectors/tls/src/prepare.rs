//! An endpoint's URL and options read once: TLS settings taken out of both (the drivers know
//! none of ferry's `verify-*` modes, and refuse parameters they do not know), `${ENV}`
//! replaced, a `password_file` read into the URL.

use std::path::PathBuf;

use ferry_engine::{ConnectorOptions, Error};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::config::{install_provider, SslMode, TlsSettings};
use crate::secret::Secret;

/// The options this crate reads, from `[source.options]` / `[sink.options]` or the URL.
pub const OPTIONS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "password_file",
];

/// What a value put into a URL is encoded with: everything but RFC 3986's unreserved
/// characters, so a password with `@`, `/` or `:` stays one piece.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An endpoint ready for its driver.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The URL with `${ENV}` replaced, the password in it, ferry's TLS parameters taken out.
    pub url: Secret,
    /// The TLS settings.
    pub tls: TlsSettings,
}

/// Reads the endpoint `url` of job side `side` (`source`, `sink`) with its `options`, taking
/// the keys of [`OPTIONS`] from both; `default` is the mode when none is given.
pub fn prepare(
    url: &str,
    options: &mut ConnectorOptions,
    side: &str,
    default: SslMode,
) -> Result<Prepared, Error> {
    install_provider();
    let url_field = format!("{side}.url");
    let bad_url = |message: String| Error::Config {
        field: url_field.clone(),
        message,
    };
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut kept = Vec::new();
    let mut from_url: Vec<(&str, String)> = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match OPTIONS.iter().find(|k| **k == key) {
            Some(key) => from_url.push((
                key,
                percent_decode_str(value).decode_utf8_lossy().into_owned(),
            )),
            None if !pair.is_empty() => kept.push(pair),
            None => {}
        }
    }
    let mut value = |key: &str| -> Result<Option<String>, Error> {
        let in_url = from_url
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone());
        let in_options = options.take(key, |text| Ok(text.to_string()))?;
        match (in_url, in_options) {
            (Some(a), Some(b)) if a != b => Err(Error::Config {
                field: format!("{side}.options.{key}"),
                message: format!(
                    "is set both here and in {side}.url, differently; keep one of them"
                ),
            }),
            (a, b) => Ok(a.or(b)),
        }
    };
    let mode = match value("sslmode")? {
        None => default,
        Some(text) => SslMode::parse(&text).ok_or_else(|| Error::Config {
            field: format!("{side}.sslmode"),
            message: format!(
                "is '{text}'; it takes one of {}",
                SslMode::CHOICES.join(", ")
            ),
        })?,
    };
    let root_cert = value("sslrootcert")?;
    let cert = value("sslcert")?.map(PathBuf::from);
    let key = value("sslkey")?.map(PathBuf::from);
    let password_file = value("password_file")?;
    let root_cert = root_cert.filter(|path| path != "system").map(PathBuf::from);
    let mode = match mode {
        // As libpq: a CA file given makes `require` check the chain.
        SslMode::Require if root_cert.is_some() => SslMode::VerifyCa,
        mode => mode,
    };
    let mut resolved = expand_env(base).map_err(bad_url)?;
    if let Some(path) = password_file {
        let password = read_password(&path).map_err(|message| Error::Config {
            field: format!("{side}.password_file"),
            message,
        })?;
        resolved = with_password(&resolved, &password).map_err(bad_url)?;
    }
    if !kept.is_empty() {
        resolved.push('?');
        resolved.push_str(&kept.join("&"));
    }
    Ok(Prepared {
        url: Secret::new(resolved),
        tls: TlsSettings {
            mode,
            root_cert,
            cert,
            key,
            field: side.to_string(),
        },
    })
}

/// `text` with every `${NAME}` replaced by the variable's value, percent-encoded.
fn expand_env(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            return Err(
                "has '${' with no closing '}'; write ${NAME} to take a value from the environment"
                    .into(),
            );
        };
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "has '${{{name}}}', not an environment variable's name (letters, digits, _)"
            ));
        }
        match std::env::var(name) {
            Ok(value) => out.extend(utf8_percent_encode(&value, COMPONENT)),
            Err(_) => {
                return Err(format!(
                    "takes ${{{name}}} from the environment, where it is not set (or not UTF-8); export {name} where ferry runs (the shell of ferry run, or ferry serve's)"
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The password in the file at `path`: its first line.
fn read_password(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!("cannot read {path}: {e}; give the path of a file holding the password")
    })?;
    let password = text.lines().next().unwrap_or_default();
    if password.is_empty() {
        return Err(format!(
            "{path} is empty; write the password on its first line"
        ));
    }
    Ok(password.to_string())
}

/// `url` with `password` (from a file) in its user information.
fn with_password(url: &str, password: &str) -> Result<String, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("is not a URL (scheme://…)".into());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let encoded: String = utf8_percent_encode(password, COMPONENT).collect();
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => {
            return Err("has a password and password_file is set too; keep one of them".into())
        }
        Some((user, host)) => format!("{user}:{encoded}@{host}"),
        None => format!(":{encoded}@{authority}"),
    };
    Ok(format!("{scheme}://{authority}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn options(pairs: &[(&str, &str)]) -> ConnectorOptions {
        let values: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ConnectorOptions::new("source.options", values)
    }

    #[test]
    fn tls_parameters_leave_the_url_and_options() {
        let mut given = options(&[("sslrootcert", "/ca.pem"), ("server_id", "7")]);
        let prepared = prepare(
            "postgres://u:p@h:5432/db?sslmode=verify-full&application_name=x",
            &mut given,
            "source",
            SslMode::Prefer,
        )
        .unwrap();
        assert_eq!(
            prepared.url.expose(),
            "postgres://u:p@h:5432/db?application_name=x"
        );
        assert_eq!(prepared.tls.mode, SslMode::VerifyFull);
        assert_eq!(prepared.tls.root_cert, Some(PathBuf::from("/ca.pem")));
        // What the connector takes is left for it.
        given.finish(&["server_id"]).unwrap_err();

        let prepared =
            prepare("mysql://u@h/db", &mut options(&[]), "sink", SslMode::Prefer).unwrap();
        assert_eq!(prepared.tls.mode, SslMode::Prefer);
        let prepared = prepare(
            "mysql://u@h/db?sslmode=require&sslrootcert=/ca.pem",
            &mut options(&[]),
            "sink",
            SslMode::Prefer,
        )
        .unwrap();
        assert_eq!(
            prepared.tls.mode,
            SslMode::VerifyCa,
            "libpq: require with a CA file"
        );
    }

    #[test]
    fn bad_and_conflicting_settings_are_named() {
        let error = prepare(
            "postgres://h/db?sslmode=strict",
            &mut options(&[]),
            "source",
            SslMode::Prefer,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with("source.sslmode: is 'strict'; it takes one of disable, prefer"),
            "{error}"
        );
        let error = prepare(
            "postgres://h/db?sslmode=require",
            &mut options(&[("sslmode", "disable")]),
            "source",
            SslMode::Prefer,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("source.options.sslmode: is set both here and in source.url"),
            "{error}"
        );
    }

    #[test]
    fn passwords_come_from_the_environment_or_a_file() {
        std::env::set_var("FERRY_TLS_TEST_PASSWORD", "p@ss/w:rd");
        let prepared = prepare(
            "postgres://u:${FERRY_TLS_TEST_PASSWORD}@h/db",
            &mut options(&[]),
            "source",
            SslMode::Prefer,
        )
        .unwrap();
        assert_eq!(prepared.url.expose(), "postgres://u:p%40ss%2Fw%3Ard@h/db");
        assert_eq!(format!("{prepared:?}").matches("p%40ss").count(), 0);

        let error = prepare(
            "postgres://u:${FERRY_TLS_UNSET_VAR}@h/db",
            &mut options(&[]),
            "source",
            SslMode::Prefer,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("source.url: takes ${FERRY_TLS_UNSET_VAR} from the environment, where it is not set"), "{error}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cr@t\n").unwrap();
        let path = file.display().to_string();
        let prepared = prepare(
            "redis://127.0.0.1:6379",
            &mut options(&[("password_file", &path)]),
            "source",
            SslMode::Disable,
        )
        .unwrap();
        assert_eq!(prepared.url.expose(), "redis://:s3cr%40t@127.0.0.1:6379");
        let prepared = prepare(
            "mysql://root@h:3306/db",
            &mut options(&[("password_file", &path)]),
            "sink",
            SslMode::Prefer,
        )
        .unwrap();
        assert_eq!(prepared.url.expose(), "mysql://root:s3cr%40t@h:3306/db");
        let error = prepare(
            "mysql://root:x@h/db",
            &mut options(&[("password_file", &path)]),
            "sink",
            SslMode::Prefer,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("password_file is set too"), "{error}");
        assert!(!error.contains("s3cr"), "{error}");
    }
}
