//! A job's spec as the service takes it: the job file as TOML, or the same keys as JSON;
//! checked as `ferry run` would check it before anything is stored; merged key by key by
//! `PATCH`; served with its secrets replaced by `********`.

use ferry_jobs::JobFile;

use crate::error::ApiError;

/// The longest job name (a PostgreSQL identifier).
pub const MAX_NAME: usize = 63;

/// What replaces a secret in every answer.
pub const REDACTED: &str = "********";

/// Checks a job name: `^[a-z_][a-z0-9_]{0,62}$`, not all digits (so a name never reads as an
/// id), which also keeps it a safe file and identifier name.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "name",
            format!(
                "job name {name:?} is not valid: use 1 to {MAX_NAME} lower-case letters, digits and underscores, starting with a letter or underscore (e.g. orders_eu)"
            ),
        ))
    }
}

/// The body's spec as TOML text: TOML as sent, or JSON turned into the same TOML.
pub fn body_to_toml(body: &[u8], content_type: Option<&str>) -> Result<String, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::invalid("body", "the body is not UTF-8 text"))?;
    let kind = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    match kind.as_deref() {
        Some("application/json") => json_to_toml(text),
        Some("application/toml") | Some("text/plain") | Some("text/x-toml") | None => {
            Ok(text.to_string())
        }
        Some(other) => Err(ApiError::invalid(
            "Content-Type",
            format!("a job spec comes as application/toml (the job file) or application/json, not {other}"),
        )),
    }
}

fn json_to_toml(text: &str) -> Result<String, ApiError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ApiError::invalid("body", format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid(
            "body",
            "the body must be a JSON object with the job file's keys (source, sink, migration, rules)",
        ));
    }
    toml::to_string(&value).map_err(|e| {
        ApiError::invalid(
            "body",
            format!("the JSON cannot be a job file ({e}); leave out null values"),
        )
    })
}

/// Parses and checks `text` as the job file of job `name`: unknown keys, bad URLs, options
/// and rules are refused here, before anything is stored.
pub fn check_spec(name: &str, text: &str) -> Result<JobFile, ApiError> {
    let file = JobFile::parse(text).map_err(|e| ApiError::from_job(&e.into()))?;
    if let Some(own) = &file.name {
        if own != name {
            return Err(ApiError::invalid(
                "name",
                format!("the job file names itself {own:?} but the job is {name:?}: leave name out of the file, or use the same"),
            ));
        }
    }
    let spec = ferry_jobs::JobSpec {
        name: name.to_string(),
        file: file.clone(),
        store: ferry_jobs::CheckpointStore::at(std::env::temp_dir().join("unused")),
    };
    ferry_jobs::open(spec).map_err(|e| ApiError::from_job(&e))?;
    Ok(file)
}

/// `patch` (TOML text) merged into `spec`: tables key by key, anything else replaced.
pub fn merge(spec: &str, patch: &str) -> Result<String, ApiError> {
    let mut base: toml::Table = spec
        .parse()
        .map_err(|e| ApiError::internal(format!("the stored spec does not parse: {e}")))?;
    let patch: toml::Table = patch
        .parse()
        .map_err(|e| ApiError::invalid("body", format!("the patch is not valid TOML: {e}")))?;
    merge_tables(&mut base, patch);
    toml::to_string(&base).map_err(|e| ApiError::internal(e.to_string()))
}

fn merge_tables(base: &mut toml::Table, patch: toml::Table) {
    for (key, value) in patch {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(old)), toml::Value::Table(new)) => merge_tables(old, new),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// `spec` with every secret replaced: passwords in URLs, and values of keys that name one.
pub fn redacted(spec: &str) -> toml::Table {
    let mut table: toml::Table = spec.parse().unwrap_or_default();
    redact_table(&mut table);
    table
}

fn redact_table(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        let secret_key = ["password", "secret", "token"]
            .iter()
            .any(|word| key.to_ascii_lowercase().contains(word));
        match value {
            toml::Value::String(text) if secret_key => *text = REDACTED.to_string(),
            toml::Value::String(text) => *text = redact_url(text),
            toml::Value::Table(inner) => redact_table(inner),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        redact_table(inner);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `url` with the password of its user part replaced (`postgres://u:********@h/db`).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    // The user part ends at the last `@`: a password may hold `/`, `?` or `#` unencoded.
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    let user = &rest[..at];
    let Some(colon) = user.find(':') else {
        return url.to_string();
    };
    format!(
        "{}{}:{REDACTED}{}",
        &url[..scheme_end + 3],
        &user[..colon],
        &rest[at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_identifiers_that_cannot_escape_a_directory() {
        for good in ["orders", "orders_eu", "_x", "a1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../etc",
            "Orders",
            "1abc",
            "a-b",
            "a/b",
            "a b",
            &"x".repeat(64),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_never_leave() {
        assert_eq!(
            redact_url("postgres://ferry:s3cr@t@127.0.0.1:5432/shop?sslmode=disable"),
            "postgres://ferry:********@127.0.0.1:5432/shop?sslmode=disable"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("mysql://root@h/db"), "mysql://root@h/db");
        let spec = "[source]\nurl = \"mysql://u:pw@h/db\"\n[source.options]\nauth_token = \"t\"\n[sink]\nurl = \"postgres://u:pw2@h/db\"\n";
        let text = toml::to_string(&redacted(spec)).unwrap();
        assert!(!text.contains("pw"), "{text}");
        assert!(!text.contains("\"t\""), "{text}");
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let spec = "[source]\nurl = \"a\"\n[sink]\nurl = \"b\"\n[migration]\ntypes = [\"full\"]\n";
        let merged = merge(spec, "[sink]\nurl = \"c\"\n").unwrap();
        let table: toml::Table = merged.parse().unwrap();
        assert_eq!(table["sink"]["url"].as_str(), Some("c"));
        assert_eq!(table["source"]["url"].as_str(), Some("a"));
        assert_eq!(table["migration"]["types"][0].as_str(), Some("full"));
    }

    #[test]
    fn json_specs_become_job_files() {
        let text = json_to_toml(r#"{"source":{"url":"postgres://h/a"},"sink":{"url":"postgres://h/b"},"rules":[{"sql":"SELECT * FROM public.t"}]}"#).unwrap();
        let file = JobFile::parse(&text).unwrap();
        assert_eq!(file.rules.len(), 1);
        assert!(json_to_toml("[1]").is_err());
        assert!(json_to_toml("{\"source\": null}").is_err());
        assert!(json_to_toml("{").is_err());
    }
}
