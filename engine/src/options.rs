//! A connector's own options: the `[source.options]` or `[sink.options]` table of a job file,
//! handed to the connector whose URL scheme the job names. Each connector takes the keys it
//! knows ([`ConnectorOptions::take`]) and refuses the rest ([`ConnectorOptions::finish`]), so
//! a misspelt option is an error naming it, never a silent default.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The options of one side of a job, as text (`4242`, `"manual"` → `manual`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectorOptions {
    /// Where they come from (`source.options`), for messages.
    field: String,
    values: BTreeMap<String, String>,
}

impl ConnectorOptions {
    /// The options at `field` of a job file.
    pub fn new(field: impl Into<String>, values: BTreeMap<String, String>) -> ConnectorOptions {
        ConnectorOptions {
            field: field.into(),
            values,
        }
    }

    /// No options, at `field`.
    pub fn empty(field: impl Into<String>) -> ConnectorOptions {
        ConnectorOptions::new(field, BTreeMap::new())
    }

    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Takes option `key` parsed by `parse`, which says what the option accepts when it fails;
    /// `None` when the job does not set it.
    pub fn take<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> std::result::Result<T, String>,
    ) -> Result<Option<T>> {
        let Some(text) = self.values.remove(key) else {
            return Ok(None);
        };
        parse(&text).map(Some).map_err(|accepted| Error::Config {
            field: format!("{}.{key}", self.field),
            message: format!("is '{text}'; {accepted}"),
        })
    }

    /// Takes option `key`, a whole number in `range` (described by `what`).
    pub fn take_number<T>(
        &mut self,
        key: &str,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<Option<T>>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        self.take(key, |text| {
            text.parse::<T>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    format!(
                        "it takes a whole number from {} to {}",
                        range.start(),
                        range.end()
                    )
                })
        })
    }

    /// Takes option `key`, one of `choices`.
    pub fn take_choice(
        &mut self,
        key: &str,
        choices: &'static [&'static str],
    ) -> Result<Option<&'static str>> {
        self.take(key, |text| {
            choices
                .iter()
                .copied()
                .find(|choice| *choice == text)
                .ok_or_else(|| format!("it takes one of {}", choices.join(", ")))
        })
    }

    /// Fails on the first option no `take` asked for: `known` lists what the connector takes.
    pub fn finish(self, known: &[&str]) -> Result<()> {
        match self.values.into_keys().next() {
            None => Ok(()),
            Some(key) => Err(Error::Config {
                field: format!("{}.{key}", self.field),
                message: if known.is_empty() {
                    "is not an option of this connector, which takes none".to_string()
                } else {
                    format!(
                        "is not an option of this connector, which takes {}",
                        known.join(", ")
                    )
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectorOptions;

    fn options(pairs: &[(&str, &str)]) -> ConnectorOptions {
        ConnectorOptions::new(
            "source.options",
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn known_options_are_taken_and_unknown_ones_refused() {
        let mut given = options(&[("server_id", "4242"), ("mode", "manual")]);
        assert_eq!(
            given.take_number("server_id", 1..=u32::MAX).unwrap(),
            Some(4242)
        );
        assert_eq!(
            given.take_choice("mode", &["auto", "manual"]).unwrap(),
            Some("manual")
        );
        given.finish(&["server_id", "mode"]).unwrap();

        let mut bad = options(&[("server_id", "0")]);
        let error = bad.take_number("server_id", 1..=u32::MAX).unwrap_err();
        assert!(error
            .to_string()
            .contains("source.options.server_id: is '0'; it takes a whole number from 1 to"));
        let error = options(&[("serverid", "1")])
            .finish(&["server_id"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("source.options.serverid: is not an option"),
            "{error}"
        );
        assert!(error.contains("server_id"), "{error}");
    }
}
