//! Resolving parsed rules against the real source catalog: which tables each rule reads,
//! where each goes, and which source column every name in it means. Every unknown name is an
//! error here, before any data moves.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{visit_expressions_mut, Expr, Ident};

use ferry_engine::{TableId, TableSchema};

use crate::error::SqlError;
use crate::rule::{Rule, RuleItem};
use crate::suggest::closest;
use crate::table_spec::SourceSpec;

/// One output column of a resolved rule.
#[derive(Clone, Debug)]
pub struct OutputColumn {
    /// The column's name in the target.
    pub name: String,
    /// The expression, with every column reference replaced by the exact, quoted source
    /// column name.
    pub expr: Expr,
    /// The source column, when the expression is just that column (its type and metadata
    /// carry over unchanged).
    pub source_column: Option<usize>,
}

/// A rule applied to one source table.
#[derive(Clone, Debug)]
pub struct ResolvedRule {
    /// Index of the rule in the job.
    pub rule: usize,
    /// The source table.
    pub source: TableSchema,
    /// The target table's name.
    pub target: TableId,
    /// The output columns, in order.
    pub columns: Vec<OutputColumn>,
    /// The WHERE condition, column references resolved like the columns'.
    pub filter: Option<Expr>,
}

impl ResolvedRule {
    /// Indexes of the source columns the rule reads, ascending: those its output columns use,
    /// and with `include_filter` those its WHERE uses too.
    pub fn referenced_columns(&self, include_filter: bool) -> BTreeSet<usize> {
        let mut used = BTreeSet::new();
        let mut collect = |expr: &Expr| {
            let _ = sqlparser::ast::visit_expressions(expr, |e| {
                if let Expr::Identifier(ident) = e {
                    if let Some(index) = self.source.column_index(&ident.value) {
                        used.insert(index);
                    }
                }
                ControlFlow::<()>::Continue(())
            });
        };
        for column in &self.columns {
            collect(&column.expr);
        }
        if let Some(filter) = self.filter.as_ref().filter(|_| include_filter) {
            collect(filter);
        }
        used
    }
}

/// Resolves every rule against `catalog`. A table selected by several rules appears once per
/// rule, in rule order.
pub fn resolve_rules(
    rules: &[Rule],
    catalog: &[TableSchema],
) -> Result<Vec<ResolvedRule>, SqlError> {
    let mut resolved = Vec::new();
    for rule in rules {
        for table in matching_tables(rule, catalog)? {
            resolved.push(resolve_one(rule, table)?);
        }
    }
    Ok(resolved)
}

fn matching_tables<'a>(
    rule: &Rule,
    catalog: &'a [TableSchema],
) -> Result<Vec<&'a TableSchema>, SqlError> {
    let matched: Vec<&TableSchema> = catalog
        .iter()
        .filter(|t| rule.source.matches(&t.id))
        .filter(|t| {
            !rule
                .except_tables
                .iter()
                .any(|except| except.matches(&t.id))
        })
        .collect();
    let full_names: Vec<String> = catalog.iter().map(|t| t.id.to_string()).collect();
    let suggestion = || closest(&rule.source.text(), full_names.iter().map(String::as_str));
    match (&rule.source, matched.len()) {
        (_, 0) if rule.source.is_pattern() => Err(SqlError::NoTableMatched {
            rule: rule.index,
            pattern: rule.source.text(),
            suggestion: suggestion(),
        }),
        (
            SourceSpec::Exact {
                schema: None,
                table,
            },
            0,
        ) => Err(SqlError::UnknownTable {
            rule: rule.index,
            table: table.clone(),
            suggestion: closest(table, catalog.iter().map(|t| t.id.name.as_str()))
                .or_else(suggestion),
        }),
        (_, 0) => Err(SqlError::UnknownTable {
            rule: rule.index,
            table: rule.source.text(),
            suggestion: suggestion(),
        }),
        (
            SourceSpec::Exact {
                schema: None,
                table,
            },
            n,
        ) if n > 1 => Err(SqlError::AmbiguousTable {
            rule: rule.index,
            table: table.clone(),
            candidates: matched
                .iter()
                .map(|t| t.id.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            example: matched[0].id.to_string(),
        }),
        _ => Ok(matched),
    }
}

fn fold(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn quoted(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

fn resolve_one(rule: &Rule, table: &TableSchema) -> Result<ResolvedRule, SqlError> {
    let target = rule
        .target
        .target_for(&rule.source, &table.id)
        .map_err(|message| SqlError::RuleUnsupported {
            rule: rule.index,
            message,
        })?;
    let mut columns = Vec::new();
    for item in &rule.items {
        match item {
            RuleItem::Wildcard => {
                let names = || table.columns.fields().iter().map(|f| f.name().as_str());
                let left_out = |name: &str| {
                    rule.except_columns
                        .iter()
                        .any(|except| match except.quote_style {
                            Some(_) => except.value == name,
                            None => except.value.eq_ignore_ascii_case(name),
                        })
                };
                for except in &rule.except_columns {
                    let found = names().any(|name| match except.quote_style {
                        Some(_) => except.value == name,
                        None => except.value.eq_ignore_ascii_case(name),
                    });
                    if !found {
                        return Err(SqlError::UnknownColumn {
                            rule: rule.index,
                            table: table.id.to_string(),
                            column: except.to_string(),
                            suggestion: closest(&except.value, names()),
                        });
                    }
                }
                for (index, field) in table.columns.fields().iter().enumerate() {
                    if left_out(field.name()) {
                        continue;
                    }
                    columns.push(OutputColumn {
                        name: field.name().clone(),
                        expr: Expr::Identifier(quoted(field.name())),
                        source_column: Some(index),
                    });
                }
            }
            RuleItem::Expr { expr, alias } => {
                let resolved = resolve_expr(rule, table, expr)?;
                let source_column = match &resolved {
                    Expr::Identifier(ident) => table.column_index(&ident.value),
                    _ => None,
                };
                let name = match (alias, source_column) {
                    (Some(alias), _) => fold(alias),
                    (None, Some(index)) => table.columns.field(index).name().clone(),
                    (None, None) => {
                        return Err(SqlError::RuleUnsupported {
                            rule: rule.index,
                            message: format!(
                            "name the computed column `{expr}` with AS, e.g. `{expr} AS new_name`"
                        ),
                        })
                    }
                };
                columns.push(OutputColumn {
                    name,
                    expr: resolved,
                    source_column,
                });
            }
        }
    }
    let mut names = BTreeSet::new();
    for column in &columns {
        if !names.insert(column.name.as_str()) {
            return Err(SqlError::DuplicateColumn {
                rule: rule.index,
                column: column.name.clone(),
            });
        }
    }
    let filter = rule
        .filter
        .as_ref()
        .map(|f| resolve_expr(rule, table, f))
        .transpose()?;
    Ok(ResolvedRule {
        rule: rule.index,
        source: table.clone(),
        target,
        columns,
        filter,
    })
}

/// Replaces every column reference in `expr` by the exact quoted source column name.
fn resolve_expr(rule: &Rule, table: &TableSchema, expr: &Expr) -> Result<Expr, SqlError> {
    let mut expr = expr.clone();
    let column_names = || table.columns.fields().iter().map(|f| f.name().as_str());
    let unknown = |written: String, wanted: &str| SqlError::UnknownColumn {
        rule: rule.index,
        table: table.id.to_string(),
        column: written,
        suggestion: closest(wanted, column_names()),
    };
    let qualifies = |parts: &[Ident]| -> bool {
        match parts {
            [name] => {
                let name = fold(name);
                rule.alias.as_deref() == Some(name.as_str()) || name == table.id.name
            }
            [schema, name] => fold(schema) == table.id.schema && fold(name) == table.id.name,
            _ => false,
        }
    };
    let flow = visit_expressions_mut(&mut expr, |e| {
        let ident = match &*e {
            Expr::Identifier(ident) => ident.clone(),
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let (column, qualifier) = parts.split_last().expect("at least two parts");
                if !qualifies(qualifier) {
                    return ControlFlow::Break(unknown(e.to_string(), &column.value));
                }
                column.clone()
            }
            _ => return ControlFlow::Continue(()),
        };
        let written = e.to_string();
        let name = fold(&ident);
        match table.column_index(&name) {
            Some(_) => {
                *e = Expr::Identifier(quoted(&name));
                ControlFlow::Continue(())
            }
            None => ControlFlow::Break(unknown(written, &name)),
        }
    });
    match flow {
        ControlFlow::Break(error) => Err(error),
        ControlFlow::Continue(()) => Ok(expr),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn table(schema: &str, name: &str, columns: &[&str]) -> TableSchema {
        TableSchema {
            id: TableId::new(schema, name),
            columns: Arc::new(Schema::new(
                columns
                    .iter()
                    .map(|c| Field::new(*c, DataType::Int64, true))
                    .collect::<Vec<_>>(),
            )),
            primary_key: vec![0],
            estimated_rows: None,
        }
    }

    fn catalog() -> Vec<TableSchema> {
        vec![
            table("shop", "orders", &["id", "name", "amount"]),
            table("shop", "customers", &["id", "email"]),
            table("crm", "customers", &["id", "Email"]),
        ]
    }

    fn resolve(sql: &str) -> Result<Vec<ResolvedRule>, SqlError> {
        resolve_rules(&[Rule::parse(0, sql)?], &catalog())
    }

    #[test]
    fn except_leaves_out_columns_and_tables() {
        let rules = resolve("INSERT INTO dst.* SELECT * EXCEPT (Name, \"amount\") FROM shop.* EXCEPT (shop.customers) WHERE id > 1").unwrap();
        assert_eq!(rules.len(), 1, "customers is left out");
        assert_eq!(rules[0].target, TableId::new("dst", "orders"));
        let names: Vec<_> = rules[0].columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id"]);
        assert_eq!(rules[0].filter.as_ref().unwrap().to_string(), "\"id\" > 1");
        let rules =
            resolve("SELECT * EXCLUDE (email) FROM *.customers EXCEPT ('crm\\..*')").unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].columns.len(), 1);
        let error = resolve("SELECT * EXCEPT (emal) FROM shop.customers").unwrap_err();
        assert!(
            matches!(error, SqlError::UnknownColumn { ref suggestion, .. } if suggestion.as_deref() == Some("email")),
            "{error}"
        );
        for bad in [
            "SELECT id EXCEPT (id) FROM shop.orders",
            "SELECT * FROM shop.orders EXCEPT (shop.x)",
            "SELECT * EXCEPT (a b) FROM shop.orders",
            "SELECT * FROM shop.* EXCEPT (shop.a shop.b)",
        ] {
            assert!(resolve(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn renames_select_and_filter_resolve_to_source_columns() {
        let rules = resolve("INSERT INTO sales.big_orders SELECT id, name AS full_name FROM shop.orders o WHERE o.amount > 100").unwrap();
        let rule = &rules[0];
        assert_eq!(rule.target, TableId::new("sales", "big_orders"));
        let names: Vec<_> = rule.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "full_name"]);
        assert_eq!(rule.columns[1].source_column, Some(1));
        assert_eq!(
            rule.filter.as_ref().unwrap().to_string(),
            "\"amount\" > 100"
        );
        assert_eq!(
            rule.referenced_columns(true)
                .into_iter()
                .collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(
            rule.referenced_columns(false)
                .into_iter()
                .collect::<Vec<_>>(),
            [0, 1]
        );
    }

    #[test]
    fn unknown_names_are_errors_with_the_closest_name() {
        let error = resolve("SELECT id, amout FROM shop.orders")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "rules[0].sql: unknown column amout in shop.orders; did you mean amount?"
        );
        let error = resolve("SELECT * FROM shop.order").unwrap_err().to_string();
        assert_eq!(
            error,
            "rules[0].sql: unknown table shop.order in the source; did you mean shop.orders?"
        );
        let error = resolve("SELECT * FROM shop.zz_*").unwrap_err().to_string();
        assert!(error.contains("matches no table"), "{error}");
        let error = resolve("SELECT * FROM customers").unwrap_err().to_string();
        assert!(
            error.contains("several schemas (shop.customers, crm.customers)"),
            "{error}"
        );
        let error = resolve("SELECT id FROM shop.orders WHERE x.amount > 1")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown column x.amount"), "{error}");
    }

    #[test]
    fn quoting_decides_case_and_computed_columns_need_names() {
        let rules = resolve("SELECT \"Email\" FROM crm.customers").unwrap();
        assert_eq!(rules[0].columns[0].name, "Email");
        let error = resolve("SELECT email FROM crm.customers")
            .unwrap_err()
            .to_string();
        assert!(error.ends_with("did you mean Email?"), "{error}");
        let error = resolve("SELECT amount * 2 FROM shop.orders")
            .unwrap_err()
            .to_string();
        assert!(error.contains("with AS"), "{error}");
        let error = resolve("SELECT id, amount AS id FROM shop.orders")
            .unwrap_err()
            .to_string();
        assert!(error.contains("appears twice"), "{error}");
    }

    #[test]
    fn a_pattern_rule_applies_to_every_matching_table() {
        let rules = resolve("INSERT INTO archive.* SELECT * FROM shop.*").unwrap();
        let targets: Vec<_> = rules.iter().map(|r| r.target.to_string()).collect();
        assert_eq!(targets, ["archive.orders", "archive.customers"]);
    }
}
