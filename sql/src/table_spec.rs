//! Table names in rules, including the forms plain SQL has no syntax for: patterns and batch
//! renames.
//!
//! Source (after `FROM`):
//! - `shop.orders`, `orders` (any schema, when only one has it), `"Shop"."Orders"` (quoted:
//!   exact case; unquoted names fold to lower case as in PostgreSQL);
//! - globs: `shop.*`, `shop.order_*`, `*.orders` (`*` matches any run of characters);
//! - a regex in single quotes, matched against the whole `schema.table`:
//!   `'shop\.orders_[0-9]+'`.
//!
//! Target (after `INSERT INTO`; absent: same name as the source):
//! - `sales.big_orders`, or a bare `big_orders` (the source's schema);
//! - templates where `*` stands for the source part's name: `sales.*` (move a schema),
//!   `archive.old_*` (prefix), `*.*_v2` (suffix);
//! - for a regex source, a single-quoted template with the regex's groups:
//!   `'archive.${1}_old'`.

use regex::Regex;
use sqlparser::tokenizer::Token;

use ferry_engine::TableId;

/// One dotted part of a name: literal text and `*` wildcards.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NamePart {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Literal(String),
    Star,
}

impl NamePart {
    fn has_star(&self) -> bool {
        self.pieces.contains(&Piece::Star)
    }

    fn literal(&self) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(text) => text.as_str(),
                Piece::Star => "*",
            })
            .collect()
    }

    fn to_regex(&self) -> String {
        let mut pattern = String::from("^");
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => pattern.push_str(&regex::escape(text)),
                Piece::Star => pattern.push_str(".*"),
            }
        }
        pattern.push('$');
        pattern
    }

    /// The name with each `*` replaced by `name`.
    fn expand(&self, name: &str) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(text) => text.as_str(),
                Piece::Star => name,
            })
            .collect()
    }
}

/// Which source tables a rule reads.
#[derive(Clone, Debug)]
pub(crate) enum SourceSpec {
    /// One table; without a schema, the one schema that has it.
    Exact {
        schema: Option<String>,
        table: String,
    },
    /// Tables whose schema and name match globs.
    Glob {
        schema: Option<Regex>,
        table: Regex,
        text: String,
    },
    /// Tables whose `schema.table` matches the regex.
    Regex { regex: Regex, text: String },
}

impl SourceSpec {
    /// The spec as the user wrote it, for messages.
    pub(crate) fn text(&self) -> String {
        match self {
            SourceSpec::Exact {
                schema: Some(schema),
                table,
            } => format!("{schema}.{table}"),
            SourceSpec::Exact {
                schema: None,
                table,
            } => table.clone(),
            SourceSpec::Glob { text, .. } | SourceSpec::Regex { text, .. } => text.clone(),
        }
    }

    /// Whether `id` is one of the tables this spec selects (an exact spec without a schema
    /// matches the name in every schema; the resolver checks it is unique).
    pub(crate) fn matches(&self, id: &TableId) -> bool {
        match self {
            SourceSpec::Exact { schema, table } => {
                *table == id.name && schema.as_ref().is_none_or(|s| *s == id.schema)
            }
            SourceSpec::Glob { schema, table, .. } => {
                table.is_match(&id.name) && schema.as_ref().is_none_or(|s| s.is_match(&id.schema))
            }
            SourceSpec::Regex { regex, .. } => {
                regex.is_match(&format!("{}.{}", id.schema, id.name))
            }
        }
    }

    pub(crate) fn is_pattern(&self) -> bool {
        !matches!(self, SourceSpec::Exact { .. })
    }
}

/// Where a rule writes.
#[derive(Clone, Debug)]
pub(crate) enum TargetSpec {
    /// The source table's own name.
    Same,
    /// Dotted parts, each possibly with `*` standing for the source part's name.
    Template {
        schema: Option<NamePart>,
        table: NamePart,
    },
    /// A regex-replacement template such as `archive.${1}_old`.
    RegexTemplate(String),
}

impl TargetSpec {
    /// The target table for source table `source`, matched by `spec`.
    pub(crate) fn target_for(
        &self,
        spec: &SourceSpec,
        source: &TableId,
    ) -> Result<TableId, String> {
        match self {
            TargetSpec::Same => Ok(source.clone()),
            TargetSpec::Template { schema, table } => Ok(TableId::new(
                schema
                    .as_ref()
                    .map_or_else(|| source.schema.clone(), |s| s.expand(&source.schema)),
                table.expand(&source.name),
            )),
            TargetSpec::RegexTemplate(template) => {
                let SourceSpec::Regex { regex, .. } = spec else {
                    return Err(
                        "a quoted target template needs a quoted regex after FROM".to_string()
                    );
                };
                let full = format!("{}.{}", source.schema, source.name);
                let captures = regex
                    .captures(&full)
                    .ok_or_else(|| format!("{full} does not match the regex"))?;
                // The template's own dot splits schema from table, never a dot that a group
                // brings in from the source's name: a bare template keeps the source schema.
                let expand = |part: &str| {
                    let mut expanded = String::new();
                    captures.expand(part, &mut expanded);
                    expanded
                };
                let not_a_name = |expanded: &str| {
                    format!(
                        "the target template '{template}' gives '{expanded}' for {full}, which is not a table name"
                    )
                };
                match template.split_once('.') {
                    Some((_, table)) if table.contains('.') => Err(format!(
                        "the target template '{template}' has more than one dot; write it as 'schema.table'"
                    )),
                    Some((schema, table)) => {
                        let (schema, table) = (expand(schema), expand(table));
                        if schema.is_empty() || table.is_empty() {
                            return Err(not_a_name(&format!("{schema}.{table}")));
                        }
                        Ok(TableId::new(schema, table))
                    }
                    None => {
                        let table = expand(template);
                        if table.is_empty() {
                            return Err(not_a_name(&table));
                        }
                        Ok(TableId::new(source.schema.clone(), table))
                    }
                }
            }
        }
    }
}

/// Splits `tokens` (the name after FROM or INTO, no whitespace inside) into dotted parts.
fn parts(tokens: &[Token]) -> Result<Vec<NamePart>, String> {
    let mut parts = vec![NamePart { pieces: Vec::new() }];
    for token in tokens {
        let current = parts.last_mut().expect("parts is never empty");
        match token {
            Token::Word(word) => {
                let text = if word.quote_style.is_some() {
                    word.value.clone()
                } else {
                    word.value.to_lowercase()
                };
                current.pieces.push(Piece::Literal(text));
            }
            Token::Mul => current.pieces.push(Piece::Star),
            Token::Period => parts.push(NamePart { pieces: Vec::new() }),
            other => return Err(format!("unexpected `{other}` in a table name")),
        }
    }
    if parts.iter().any(|p| p.pieces.is_empty()) {
        return Err("a table name has an empty part".into());
    }
    if parts.len() > 2 {
        return Err("a table name has at most two parts: schema.table".into());
    }
    Ok(parts)
}

/// Parses the tokens after FROM.
pub(crate) fn parse_source(tokens: &[Token]) -> Result<SourceSpec, String> {
    if let [Token::SingleQuotedString(pattern)] = tokens {
        let regex = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("the table regex '{pattern}' is not valid: {e}"))?;
        return Ok(SourceSpec::Regex {
            regex,
            text: format!("'{pattern}'"),
        });
    }
    let mut parts = parts(tokens)?;
    let table = parts.pop().expect("parts is never empty");
    let schema = parts.pop();
    if table.has_star() || schema.as_ref().is_some_and(NamePart::has_star) {
        let text = match &schema {
            Some(s) => format!("{}.{}", s.literal(), table.literal()),
            None => table.literal(),
        };
        let compile = |part: &NamePart| {
            Regex::new(&part.to_regex()).map_err(|e| format!("bad pattern {}: {e}", part.literal()))
        };
        return Ok(SourceSpec::Glob {
            schema: schema.as_ref().map(compile).transpose()?,
            table: compile(&table)?,
            text,
        });
    }
    Ok(SourceSpec::Exact {
        schema: schema.map(|s| s.literal()),
        table: table.literal(),
    })
}

/// Parses the tokens after INSERT INTO.
pub(crate) fn parse_target(tokens: &[Token]) -> Result<TargetSpec, String> {
    if let [Token::SingleQuotedString(template)] = tokens {
        return Ok(TargetSpec::RegexTemplate(template.clone()));
    }
    let mut parts = parts(tokens)?;
    let table = parts.pop().expect("parts is never empty");
    Ok(TargetSpec::Template {
        schema: parts.pop(),
        table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::Tokenizer;

    fn tokens(text: &str) -> Vec<Token> {
        Tokenizer::new(&PostgreSqlDialect {}, text)
            .tokenize()
            .unwrap()
    }

    fn id(schema: &str, name: &str) -> TableId {
        TableId::new(schema, name)
    }

    #[test]
    fn exact_names_fold_unquoted_parts_only() {
        let spec = parse_source(&tokens("Shop.\"Orders\"")).unwrap();
        assert!(spec.matches(&id("shop", "Orders")));
        assert!(!spec.matches(&id("shop", "orders")));
        let bare = parse_source(&tokens("orders")).unwrap();
        assert!(bare.matches(&id("any", "orders")));
    }

    #[test]
    fn globs_match_parts_and_templates_rename_in_batch() {
        let spec = parse_source(&tokens("shop.order*")).unwrap();
        assert!(spec.is_pattern());
        assert!(spec.matches(&id("shop", "orders")));
        assert!(spec.matches(&id("shop", "order_items")));
        assert!(!spec.matches(&id("shop", "customers")));
        assert!(!spec.matches(&id("other", "orders")));

        let prefix = parse_target(&tokens("archive.old_*")).unwrap();
        assert_eq!(
            prefix.target_for(&spec, &id("shop", "orders")).unwrap(),
            id("archive", "old_orders")
        );
        let suffix = parse_target(&tokens("*.*_v2")).unwrap();
        assert_eq!(
            suffix.target_for(&spec, &id("shop", "orders")).unwrap(),
            id("shop", "orders_v2")
        );
        let bare = parse_target(&tokens("big_orders")).unwrap();
        assert_eq!(
            bare.target_for(&spec, &id("shop", "orders")).unwrap(),
            id("shop", "big_orders")
        );
    }

    #[test]
    fn regexes_match_whole_names_and_expand_groups() {
        let spec = parse_source(&tokens(r"'shop\.orders_([0-9]+)'")).unwrap();
        assert!(spec.matches(&id("shop", "orders_2024")));
        assert!(!spec.matches(&id("shop", "orders_2024x")));
        let target = parse_target(&tokens("'archive.y${1}'")).unwrap();
        assert_eq!(
            target
                .target_for(&spec, &id("shop", "orders_2024"))
                .unwrap(),
            id("archive", "y2024")
        );
        assert!(parse_source(&tokens("'(unclosed'"))
            .unwrap_err()
            .contains("not valid"));
    }

    #[test]
    fn a_dot_from_the_source_name_never_moves_the_target_to_another_schema() {
        let spec = parse_source(&tokens(r"'shop\.(.*)'")).unwrap();
        let dotted = id("shop", "eu.orders");
        let bare = parse_target(&tokens("'${1}_old'")).unwrap();
        assert_eq!(
            bare.target_for(&spec, &dotted).unwrap(),
            id("shop", "eu.orders_old")
        );
        let qualified = parse_target(&tokens("'archive.${1}'")).unwrap();
        assert_eq!(
            qualified.target_for(&spec, &dotted).unwrap(),
            id("archive", "eu.orders")
        );
        let whole = parse_target(&tokens("'${0}'")).unwrap();
        assert_eq!(
            whole.target_for(&spec, &id("shop", "orders")).unwrap(),
            id("shop", "shop.orders")
        );
        let twice = parse_target(&tokens("'a.b.${1}'")).unwrap();
        assert!(twice
            .target_for(&spec, &dotted)
            .unwrap_err()
            .contains("more than one dot"));
        let empty = parse_target(&tokens("'.${1}'")).unwrap();
        assert!(empty.target_for(&spec, &dotted).is_err());
    }

    #[test]
    fn malformed_names_are_refused() {
        assert!(parse_source(&tokens("a.b.c")).is_err());
        assert!(parse_source(&tokens("a.")).is_err());
    }
}
