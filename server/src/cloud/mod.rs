//! The cloud services' own APIs over the one job catalog: Alibaba Cloud DTS and RDS RPC
//! actions ([`dts`], `GET|POST /?Action=…`) and Huawei DCS online migration REST
//! ([`dcs`], `/v2/{project_id}/…`). Each translates its requests into the same specs,
//! actions and limits the native API uses, and its answers back into the service's field
//! names, spellings and error shapes; a job made through one is seen through every other.

pub mod dcs;
pub mod dts;
pub mod rds;

use std::collections::BTreeMap;

/// Instance ids the cloud APIs name (`DBInstanceId`, `InstanceID`, DCS `id`) and the URLs they
/// stand for, from the server's config file (`[endpoints.<id>] url = …`).
#[derive(Clone, Debug, Default)]
pub struct Endpoints(pub BTreeMap<String, String>);

impl Endpoints {
    /// The URL of instance `id`.
    pub fn url(&self, id: &str) -> Option<&str> {
        self.0.get(id).map(String::as_str)
    }

    /// The ids, for messages.
    pub fn ids(&self) -> String {
        if self.0.is_empty() {
            "none are configured: add [endpoints.<id>] url = \"…\" to the server's config file"
                .into()
        } else {
            self.0.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }
}

/// `bytes` random bytes from the OS (ids of requests, SCRAM salts).
pub fn random_bytes(count: usize) -> Vec<u8> {
    use std::io::Read;
    let mut bytes = vec![0u8; count];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        // No /dev/urandom: the clock's nanoseconds, mixed; ids only need to differ.
        let mut seed = crate::service::now_ms() ^ u64::from(std::process::id());
        for byte in &mut bytes {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *byte = (seed >> 33) as u8;
        }
    }
    bytes
}

/// A request id in the services' shape (`40E35BD9-002E-4D63-9BE5-FBA48833A1B2`).
pub fn request_id() -> String {
    uuid().to_ascii_uppercase()
}

/// A random UUID-shaped id, lower case (`90754308-a156-406f-a837-8f852f38a646`).
pub fn uuid() -> String {
    let hex: String = random_bytes(16)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The URL of `side` (`source`, `sink`) in a job's spec; empty when it has none yet.
pub fn spec_url(spec: &str, side: &str) -> String {
    let spec: toml::Table = spec.parse().unwrap_or_default();
    spec.get(side)
        .and_then(|s| s.get("url"))
        .and_then(|u| u.as_str())
        .unwrap_or_default()
        .to_string()
}

/// `host` if it is a host name, an IPv4 address or a bracketed IPv6 one — nothing that would
/// change a URL's user, port, database or options (`@`, `/`, `?`, `#`, `:`).
pub fn check_host<'a>(field: &str, host: &'a str) -> Result<&'a str, String> {
    let name = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
    let ipv6 = host.len() > 2
        && host.starts_with('[')
        && host.ends_with(']')
        && host[1..host.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .is_ok();
    if name || ipv6 {
        Ok(host)
    } else {
        Err(format!(
            "{field} {host:?} is not a host name or an IP address"
        ))
    }
}

/// `text` percent-encoded for the user, password or path of a URL.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `url` with its user and password replaced where given.
pub fn with_credentials(url: &str, user: Option<&str>, password: Option<&str>) -> String {
    if user.is_none() && password.is_none() {
        return url.to_string();
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (old_user, old_password, place) = match rest.rsplit_once('@') {
        Some((credentials, place)) => match credentials.split_once(':') {
            Some((u, p)) => (u.to_string(), Some(p.to_string()), place),
            None => (credentials.to_string(), None, place),
        },
        None => (String::new(), None, rest),
    };
    let user = user.map(encode).unwrap_or(old_user);
    let password = password.map(encode).or(old_password);
    match password {
        Some(password) => format!("{scheme}://{user}:{password}@{place}"),
        None if user.is_empty() => format!("{scheme}://{place}"),
        None => format!("{scheme}://{user}@{place}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_replaced_and_encoded() {
        assert_eq!(
            with_credentials("mysql://a:b@h:1/db", Some("u"), Some("p@ss/w:rd")),
            "mysql://u:p%40ss%2Fw%3Ard@h:1/db"
        );
        assert_eq!(
            with_credentials("postgres://h:1/db", Some("u"), None),
            "postgres://u@h:1/db"
        );
        assert_eq!(
            with_credentials("redis://h:1", None, Some("x")),
            "redis://:x@h:1"
        );
        assert_eq!(with_credentials("redis://h:1", None, None), "redis://h:1");
    }

    #[test]
    fn hosts_cannot_rewrite_a_url() {
        for good in ["127.0.0.1", "db-1.example.com", "[::1]"] {
            assert_eq!(check_host("IP", good), Ok(good));
        }
        for bad in [
            "h:1/otherdb?sslmode=disable#",
            "x@h",
            "",
            "h/db",
            "[::1",
            "h:5432",
        ] {
            assert!(check_host("IP", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_ids_have_the_services_shape() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_ne!(id, request_id());
    }
}
