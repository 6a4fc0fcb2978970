//! Parsing one rule: `[INSERT INTO target] SELECT items FROM source [WHERE condition]`.
//!
//! The table names may be patterns (see [`crate::table_spec`]), which plain SQL cannot parse,
//! so they are found in the token stream and cut out of the rule's *text* by the tokens'
//! spans; the rest is parsed by sqlparser with the PostgreSQL dialect exactly as written
//! (literals, escaped quotes and comments untouched — never rebuilt from tokens).

use sqlparser::ast::{
    Expr, GroupByExpr, Ident, ObjectNamePart, Query, SelectItem, SetExpr, Statement, TableFactor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use crate::error::SqlError;
use crate::offsets::ByteOffsets;
use crate::table_spec::{parse_source, parse_target, SourceSpec, TargetSpec};

/// The identifier that stands in for the source name while sqlparser parses the rest.
const SOURCE_PLACEHOLDER: &str = "__ferry_source";

/// Longest rule text accepted: room for an IN list of thousands of values, and a bound on
/// what parsing one rule may cost.
pub const MAX_RULE_BYTES: usize = 256 * 1024;

/// Most operators in one rule. Every walk over a rule — resolving names, pushing a filter
/// down, DataFusion's planning and evaluation, even dropping it — goes one call deeper per
/// operator of a chain such as `a OR b OR …`, on thread stacks of 2 MB: this bound keeps the
/// deepest chain far from overflowing one. Long lists of alternatives are IN lists, which
/// add no depth. (Nesting by parentheses and calls is bounded by sqlparser's own limit.)
pub const MAX_RULE_OPERATORS: usize = 512;

/// One item of a rule's SELECT list.
#[derive(Clone, Debug)]
pub enum RuleItem {
    /// `*`: every column, with its own name.
    Wildcard,
    /// An expression, named by its alias or, for a plain column, by the column.
    Expr {
        /// The expression as parsed (boxed: an `Expr` is large).
        expr: Box<Expr>,
        /// The `AS` name, if any.
        alias: Option<Ident>,
    },
}

/// A parsed rule, not yet checked against a catalog.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Index in the job's `rules`.
    pub index: usize,
    /// The rule's text.
    pub sql: String,
    pub(crate) source: SourceSpec,
    pub(crate) target: TargetSpec,
    /// The source's alias (`FROM shop.orders o`), for qualified column names.
    pub(crate) alias: Option<String>,
    /// The SELECT list.
    pub items: Vec<RuleItem>,
    /// The WHERE condition.
    pub filter: Option<Expr>,
    /// `SELECT * EXCEPT (columns)`: the columns the wildcard leaves out.
    pub(crate) except_columns: Vec<Ident>,
    /// `FROM source EXCEPT (tables)`: the tables a pattern source leaves out.
    pub(crate) except_tables: Vec<SourceSpec>,
}

impl Rule {
    /// Parses the rule at `index` of a job.
    pub fn parse(index: usize, sql: &str) -> Result<Rule, SqlError> {
        let syntax = |message: String| SqlError::RuleSyntax {
            rule: index,
            sql: sql.to_string(),
            message,
        };
        let unsupported = |message: String| SqlError::RuleUnsupported {
            rule: index,
            message,
        };
        if sql.len() > MAX_RULE_BYTES {
            return Err(unsupported(format!(
                "the rule is {} KiB long; a rule holds at most {} KiB: split it into several rules",
                sql.len() / 1024,
                MAX_RULE_BYTES / 1024
            )));
        }
        let dialect = PostgreSqlDialect {};
        let spanned = Tokenizer::new(&dialect, sql)
            .tokenize_with_location()
            .map_err(|e| syntax(e.to_string()))?;
        let operators = spanned.iter().filter(|t| is_operator(&t.token)).count();
        if operators > MAX_RULE_OPERATORS {
            return Err(unsupported(format!(
                "the rule has {operators} operators; a rule holds at most {MAX_RULE_OPERATORS} (each one nests every walk over the rule one level deeper): write a long list of alternatives as `column IN (…)`, or split the rule"
            )));
        }
        let offsets = ByteOffsets::new(sql);
        let ranges: Vec<(usize, usize)> = spanned
            .iter()
            .map(|t| (offsets.of(t.span.start), offsets.of(t.span.end)))
            .collect();
        let tokens: Vec<Token> = spanned.into_iter().map(|t| t.token).collect();

        // The statement sqlparser sees starts after `INSERT INTO target`.
        let mut body = 0;
        let mut target = TargetSpec::Same;
        let first = next_significant(&tokens, 0);
        if let Some((at, Token::Word(word))) = first {
            if word.keyword == Keyword::INSERT {
                let into = next_significant(&tokens, at + 1)
                    .filter(|(_, t)| matches!(t, Token::Word(w) if w.keyword == Keyword::INTO))
                    .ok_or_else(|| syntax("expected INTO after INSERT".into()))?;
                let start = next_significant(&tokens, into.0 + 1)
                    .map(|(i, _)| i)
                    .ok_or_else(|| syntax("expected a table name after INSERT INTO".into()))?;
                let end = name_end(&tokens, start);
                target = parse_target(&tokens[start..end]).map_err(&syntax)?;
                if end < tokens.len() && matches!(tokens[end], Token::LParen) {
                    return Err(unsupported(
                        "a column list after the target table is not supported; name the columns in the SELECT list with AS".into(),
                    ));
                }
                body = end;
            }
        }

        let from = find_from(&tokens[body..])
            .map(|i| i + body)
            .ok_or_else(|| syntax("expected SELECT … FROM table".into()))?;
        let start = next_significant(&tokens, from + 1)
            .map(|(i, _)| i)
            .ok_or_else(|| syntax("expected a table name after FROM".into()))?;
        let end = name_end(&tokens, start);
        if start == end {
            return Err(syntax("expected a table name after FROM".into()));
        }
        let source = parse_source(&tokens[start..end]).map_err(&syntax)?;
        // `FROM source EXCEPT (table, …)`: tables the source leaves out.
        let (except_tables, source_end) = match except_list(&tokens, end) {
            Some((open, close)) => {
                let mut tables = Vec::new();
                for (from, to) in list_items(&tokens, open + 1, close) {
                    let name_start = next_significant(&tokens, from)
                        .map(|(i, _)| i)
                        .filter(|i| *i < to)
                        .ok_or_else(|| syntax("expected a table name in EXCEPT ( … )".into()))?;
                    let name_stop = name_end(&tokens, name_start);
                    if next_significant(&tokens, name_stop).is_some_and(|(i, _)| i < to) {
                        return Err(syntax(
                            "EXCEPT ( … ) after FROM lists table names or patterns, separated by commas".into(),
                        ));
                    }
                    tables.push(parse_source(&tokens[name_start..name_stop]).map_err(&syntax)?);
                }
                (tables, close + 1)
            }
            None => (Vec::new(), end),
        };
        // `SELECT * EXCEPT (column, …)`: columns the wildcard leaves out.
        let mut except_columns = Vec::new();
        let mut select_cut = None;
        let mut at = body;
        while at < from {
            if matches!(tokens[at], Token::Mul) {
                if let Some((open, close)) = except_list(&tokens, at + 1).filter(|(_, c)| *c < from)
                {
                    for (item_start, item_end) in list_items(&tokens, open + 1, close) {
                        let words: Vec<&Token> = tokens[item_start..item_end]
                            .iter()
                            .filter(|t| !is_space(t))
                            .collect();
                        match words[..] {
                            [Token::Word(word)] => except_columns.push(Ident {
                                value: word.value.clone(),
                                quote_style: word.quote_style,
                                span: sqlparser::tokenizer::Span::empty(),
                            }),
                            _ => {
                                return Err(syntax(
                                    "EXCEPT ( … ) after * lists column names, separated by commas"
                                        .into(),
                                ))
                            }
                        }
                    }
                    select_cut = Some((ranges[at].1, ranges[close].1));
                    break;
                }
            }
            at += 1;
        }
        // The rule's own text with only the source name (and the EXCEPT lists) replaced.
        let body_start = ranges.get(body).map_or(sql.len(), |r| r.0);
        let head = match select_cut {
            Some((cut_start, cut_end)) => format!(
                "{}{}",
                &sql[body_start..cut_start],
                &sql[cut_end..ranges[start].0]
            ),
            None => sql[body_start..ranges[start].0].to_string(),
        };
        let text = format!(
            "{head}{SOURCE_PLACEHOLDER}{}",
            &sql[ranges[source_end - 1].1..]
        );
        let mut statements =
            Parser::parse_sql(&dialect, &text).map_err(|e| syntax(e.to_string()))?;
        if statements.len() != 1 {
            return Err(syntax("a rule is exactly one statement".into()));
        }
        let Statement::Query(query) = statements.remove(0) else {
            return Err(syntax(
                "a rule is [INSERT INTO target] SELECT … FROM source".into(),
            ));
        };
        let (items, alias, filter) = select_parts(*query).map_err(unsupported)?;
        if let Some(filter) = &filter {
            reject_subqueries(filter).map_err(unsupported)?;
        }
        for item in &items {
            if let RuleItem::Expr { expr, .. } = item {
                reject_subqueries(expr).map_err(unsupported)?;
            }
        }
        if !except_columns.is_empty() && !items.iter().any(|i| matches!(i, RuleItem::Wildcard)) {
            return Err(syntax("EXCEPT ( … ) follows * in the SELECT list".into()));
        }
        if !except_tables.is_empty() && !source.is_pattern() {
            return Err(syntax(
                "EXCEPT ( … ) after FROM follows a pattern (shop.*, a regex): a single table has nothing to leave out".into(),
            ));
        }
        Ok(Rule {
            index,
            sql: sql.to_string(),
            source,
            target,
            alias,
            items,
            filter,
            except_columns,
            except_tables,
        })
    }
}

type SelectParts = (Vec<RuleItem>, Option<String>, Option<Expr>);

fn select_parts(query: Query) -> Result<SelectParts, String> {
    if query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
    {
        return Err("WITH, ORDER BY, LIMIT and FETCH are not supported in rules: a rule maps rows one by one".into());
    }
    let SetExpr::Select(select) = *query.body else {
        return Err("UNION, INTERSECT, EXCEPT and VALUES are not supported in rules".into());
    };
    let select = *select;
    let grouped = match &select.group_by {
        GroupByExpr::Expressions(expressions, modifiers) => {
            !expressions.is_empty() || !modifiers.is_empty()
        }
        GroupByExpr::All(_) => true,
    };
    if select.distinct.is_some() || grouped || select.having.is_some() || select.qualify.is_some() {
        return Err("DISTINCT, GROUP BY, HAVING and QUALIFY are not supported in rules: a rule maps rows one by one".into());
    }
    if select.from.len() != 1 || !select.from[0].joins.is_empty() {
        return Err("a rule reads exactly one table: joins are not supported".into());
    }
    let alias = match &select.from[0].relation {
        TableFactor::Table {
            name, alias, args, ..
        } if args.is_none()
            && matches!(name.0.as_slice(), [ObjectNamePart::Identifier(ident)] if ident.value == SOURCE_PLACEHOLDER) =>
        {
            alias.as_ref().map(|a| a.name.value.clone())
        }
        _ => return Err("a rule reads a table by name after FROM".into()),
    };
    let mut items = Vec::with_capacity(select.projection.len());
    for item in select.projection {
        items.push(match item {
            SelectItem::Wildcard(options) => {
                if options.to_string().trim().is_empty() {
                    RuleItem::Wildcard
                } else {
                    return Err(format!(
                        "`*{options}` is not supported; list the columns to keep instead"
                    ));
                }
            }
            SelectItem::UnnamedExpr(expr) => RuleItem::Expr {
                expr: Box::new(expr),
                alias: None,
            },
            SelectItem::ExprWithAlias { expr, alias } => RuleItem::Expr {
                expr: Box::new(expr),
                alias: Some(alias),
            },
            other => return Err(format!("the select item `{other}` is not supported")),
        });
    }
    Ok((items, alias, select.selection))
}

fn reject_subqueries(expr: &Expr) -> Result<(), String> {
    let mut found = None;
    let _ = sqlparser::ast::visit_expressions(expr, |e| {
        if matches!(
            e,
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
        ) {
            found = Some(e.to_string());
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    });
    match found {
        Some(text) => Err(format!(
            "subqueries are not supported in rules (`{text}`): a rule sees one row at a time"
        )),
        None => Ok(()),
    }
}

/// Whether `token` joins or modifies expressions (each one can nest a rule one level deeper).
fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(word) if word.quote_style.is_none() => matches!(
            word.keyword,
            Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::BETWEEN
                | Keyword::IN
                | Keyword::COLLATE
                | Keyword::AT
        ),
        Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::DuckIntDiv
        | Token::Mod
        | Token::StringConcat
        | Token::Eq
        | Token::DoubleEq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq
        | Token::Spaceship
        | Token::Caret
        | Token::Ampersand
        | Token::Pipe
        | Token::Tilde
        | Token::TildeAsterisk
        | Token::ExclamationMarkTilde
        | Token::ExclamationMarkTildeAsterisk
        | Token::ShiftLeft
        | Token::ShiftRight
        | Token::ExclamationMark
        | Token::DoubleColon
        | Token::Arrow
        | Token::LongArrow
        | Token::HashArrow
        | Token::HashLongArrow
        | Token::AtSign
        | Token::Sharp => true,
        _ => false,
    }
}

fn is_space(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_))
}

/// The first non-whitespace token at or after `from`.
fn next_significant(tokens: &[Token], from: usize) -> Option<(usize, &Token)> {
    tokens
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, t)| !is_space(t) && !matches!(t, Token::EOF))
}

/// `EXCEPT ( … )` starting at the first significant token from `from`: the indexes of its
/// parentheses.
fn except_list(tokens: &[Token], from: usize) -> Option<(usize, usize)> {
    let (word_at, word) = next_significant(tokens, from)?;
    let is_except = matches!(word, Token::Word(w) if w.quote_style.is_none()
        && (w.keyword == Keyword::EXCEPT || w.value.eq_ignore_ascii_case("EXCLUDE")));
    if !is_except {
        return None;
    }
    let (open, paren) = next_significant(tokens, word_at + 1)?;
    if !matches!(paren, Token::LParen) {
        return None;
    }
    let close = tokens[open + 1..]
        .iter()
        .position(|t| matches!(t, Token::RParen))
        .map(|i| open + 1 + i)?;
    Some((open, close))
}

/// The comma-separated items between `from` and `to` (token indexes), as ranges.
fn list_items(tokens: &[Token], from: usize, to: usize) -> Vec<(usize, usize)> {
    let mut items = Vec::new();
    let mut start = from;
    for (i, token) in tokens.iter().enumerate().take(to).skip(from) {
        if matches!(token, Token::Comma) {
            items.push((start, i));
            start = i + 1;
        }
    }
    items.push((start, to));
    items
}

/// The end of a table name starting at `start`: it runs over words, `*`, `.` and a quoted
/// regex, up to whitespace or anything else.
fn name_end(tokens: &[Token], start: usize) -> usize {
    let mut end = start;
    while let Some(token) = tokens.get(end) {
        let part_of_name = match token {
            Token::Word(word) => {
                word.quote_style.is_some()
                    || !matches!(word.keyword, Keyword::WHERE | Keyword::AS | Keyword::SELECT)
            }
            Token::Mul | Token::Period | Token::SingleQuotedString(_) => true,
            _ => false,
        };
        if !part_of_name {
            break;
        }
        end += 1;
    }
    end
}

/// The index of the top-level FROM keyword.
fn find_from(tokens: &[Token]) -> Option<usize> {
    let mut depth = 0i32;
    for (index, token) in tokens.iter().enumerate() {
        match token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(word) if depth == 0 && word.keyword == Keyword::FROM => return Some(index),
            Token::Whitespace(Whitespace::SingleLineComment { .. }) => {}
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_engine::TableId;

    #[test]
    fn parses_the_documented_rule() {
        let rule = Rule::parse(
            0,
            "INSERT INTO sales.big_orders SELECT id, name AS full_name FROM shop.orders WHERE amount > 100",
        )
        .unwrap();
        assert!(rule.source.matches(&TableId::new("shop", "orders")));
        let target = rule
            .target
            .target_for(&rule.source, &TableId::new("shop", "orders"))
            .unwrap();
        assert_eq!(target, TableId::new("sales", "big_orders"));
        assert_eq!(rule.items.len(), 2);
        assert_eq!(rule.filter.unwrap().to_string(), "amount > 100");
    }

    #[test]
    fn patterns_and_aliases_survive_parsing() {
        let rule = Rule::parse(
            1,
            "INSERT INTO archive.old_* SELECT * FROM shop.* s WHERE s.id IN (1, 2)",
        )
        .unwrap();
        assert!(rule.source.is_pattern());
        assert_eq!(rule.alias.as_deref(), Some("s"));
        assert!(matches!(rule.items[0], RuleItem::Wildcard));
        let rule = Rule::parse(2, r"SELECT * FROM 'shop\.orders_[0-9]+'").unwrap();
        assert!(rule.source.matches(&TableId::new("shop", "orders_7")));
    }

    #[test]
    fn unsupported_shapes_say_what_is_unsupported() {
        let error = |sql: &str| Rule::parse(3, sql).unwrap_err().to_string();
        assert!(error("SELECT count(*) FROM t GROUP BY a").contains("GROUP BY"));
        assert!(error("SELECT * FROM a JOIN b ON a.id = b.id").contains("joins"));
        assert!(error("SELECT * FROM t ORDER BY id").contains("ORDER BY"));
        assert!(error("SELECT * FROM t WHERE id IN (SELECT 1)").contains("subqueries"));
        let syntax = error("SELEC * FROM t");
        assert!(syntax.starts_with("rules[3].sql: "), "{syntax}");
        assert!(error("SELECT * FROM t WHERE").contains("does not parse"));
    }

    #[test]
    fn rules_too_deep_or_too_long_are_refused_before_parsing() {
        let chain = |terms: usize, join: &str| {
            let terms: Vec<String> = (0..terms).map(|i| format!("id = {i}")).collect();
            format!("SELECT * FROM t WHERE {}", terms.join(join))
        };
        // At the limit a chain parses and its walks (display, visits, drop) hold.
        let at_limit = chain(MAX_RULE_OPERATORS / 2, " OR ");
        let rule = Rule::parse(0, &at_limit).unwrap();
        assert!(rule.filter.unwrap().to_string().starts_with("id = 0 OR"));
        for sql in [
            chain(2_000, " OR "),
            format!("SELECT a + {} AS s FROM t", vec!["1"; 20_000].join(" + ")),
            format!("SELECT * FROM t WHERE {}a", "NOT ".repeat(5_000)),
            format!("SELECT a{} AS c FROM t", "::text".repeat(5_000)),
        ] {
            let error = Rule::parse(1, &sql).unwrap_err().to_string();
            assert!(error.contains("operators; a rule holds at most"), "{error}");
        }
        let long = format!(
            "SELECT * FROM t WHERE id IN ({})",
            vec!["12345678"; 40_000].join(",")
        );
        let error = Rule::parse(2, &long).unwrap_err().to_string();
        assert!(error.contains("KiB long"), "{error}");
        // Nesting is bounded by the parser.
        let nested = format!(
            "SELECT * FROM t WHERE {}1{}",
            "(".repeat(5_000),
            ")".repeat(5_000)
        );
        assert!(Rule::parse(3, &nested).is_err());
        // A long IN list is fine.
        let list = format!(
            "SELECT * FROM t WHERE id IN ({})",
            vec!["7"; 10_000].join(",")
        );
        Rule::parse(4, &list).unwrap();
    }

    #[test]
    fn quoted_text_reaches_the_parser_exactly_as_written() {
        let filter = |sql: &str| Rule::parse(4, sql).unwrap().filter.unwrap();
        // An escaped quote keeps the literal whole: no OR, no comment.
        let injected = filter("SELECT * FROM t WHERE name = 'x'' OR 1=1 --'");
        let Expr::BinaryOp { right, .. } = &injected else {
            panic!("{injected:?}")
        };
        assert_eq!(right.to_string(), "'x'' OR 1=1 --'");
        assert_eq!(
            filter("SELECT * FROM t WHERE name = 'O''Brien'").to_string(),
            "name = 'O''Brien'"
        );
        let quoted = filter(r#"SELECT * FROM t WHERE "co""l" = 1"#);
        let Expr::BinaryOp { left, .. } = &quoted else {
            panic!("{quoted:?}")
        };
        assert!(matches!(&**left, Expr::Identifier(ident) if ident.value == "co\"l"));
        // Escape strings, dollar quotes, comments and line breaks around the names.
        let escaped = filter(r"SELECT * FROM t WHERE a = E'it\'s'");
        assert!(escaped.to_string().contains("E'it"), "{escaped}");
        let dollar = filter("SELECT * FROM t WHERE a = $$it's$$");
        assert!(dollar.to_string().contains("it's"), "{dollar}");
        let rule = Rule::parse(
            5,
            "INSERT INTO\n  \"Sales\".\"O\"\"rders\" /* it's */ SELECT *\nFROM shop.\"a\"\"b\" -- x'\nWHERE a = 'y'''",
        )
        .unwrap();
        assert_eq!(rule.filter.unwrap().to_string(), "a = 'y'''");
        assert!(rule.source.matches(&TableId::new("shop", "a\"b")));
        let target = rule
            .target
            .target_for(&rule.source, &TableId::new("shop", "a\"b"))
            .unwrap();
        assert_eq!(target, TableId::new("Sales", "O\"rders"));
        // A quoted regex with a doubled quote inside, and text after it that is not ASCII.
        let rule = Rule::parse(6, r"SELECT * FROM 'shop\.o''s' WHERE x = 'é''ü'").unwrap();
        assert!(rule.source.matches(&TableId::new("shop", "o's")));
        assert_eq!(rule.filter.unwrap().to_string(), "x = 'é''ü'");
    }
}
