//! Which rule filters a source can evaluate itself, rendered in its SQL.
//!
//! A filter is pushed down only when every node in it is one whose meaning is the same in the
//! source engine and in DataFusion: column references, literals, comparisons, `IN`, `BETWEEN`,
//! `LIKE`, `IS [NOT] NULL`, `AND`/`OR`/`NOT`, arithmetic and a short list of scalar functions.
//! Anything else is evaluated by ferry on every batch instead (never dropped).
//!
//! MySQL compares text by its collation (often case- and trailing-space-insensitive), divides
//! integers into decimals and fails on negative UNSIGNED arithmetic, so into MySQL only
//! comparisons of numeric columns with numeric literals go, joined by `AND`/`OR`/`NOT`, `IN`,
//! `BETWEEN` and `IS [NOT] NULL`: there both engines agree exactly.

use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value};

/// SQL engines ferry can push filters into: each source says which it evaluates
/// ([`ferry_engine::Source::filter_dialect`]).
pub use ferry_engine::FilterDialect as Dialect;

/// What a source column holds, as far as pushing a filter down cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// An integer, decimal or floating-point number.
    Number,
    /// Anything else.
    Other,
}

/// Functions whose results agree between PostgreSQL and DataFusion for the types ferry reads.
const PORTABLE_FUNCTIONS: &[&str] = &[
    "lower",
    "upper",
    "length",
    "char_length",
    "character_length",
    "abs",
    "coalesce",
    "nullif",
    "btrim",
    "ltrim",
    "rtrim",
    "starts_with",
];

/// `expr` in the dialect's SQL, if the source can evaluate it with the same result; `kind`
/// says what a column (by name) holds.
pub fn render(expr: &Expr, dialect: Dialect, kind: &dyn Fn(&str) -> ColumnKind) -> Option<String> {
    match dialect {
        Dialect::Postgres => portable(expr).then(|| expr.to_string()),
        Dialect::Mysql => {
            let mut out = String::new();
            mysql_numeric(expr, kind, &mut out).then_some(out)
        }
    }
}

/// Renders `expr` into `out` as MySQL SQL; false when it is outside the numeric subset.
fn mysql_numeric(expr: &Expr, kind: &dyn Fn(&str) -> ColumnKind, out: &mut String) -> bool {
    match expr {
        Expr::Identifier(ident) => {
            if kind(&ident.value) != ColumnKind::Number {
                return false;
            }
            out.push('`');
            out.push_str(&ident.value.replace('`', "``"));
            out.push('`');
            true
        }
        Expr::Value(value) => match &value.value {
            Value::Number(number, _) => {
                out.push_str(number);
                true
            }
            Value::Null => {
                out.push_str("NULL");
                true
            }
            _ => false,
        },
        Expr::Nested(inner) => {
            out.push('(');
            let ok = mysql_numeric(inner, kind, out);
            out.push(')');
            ok
        }
        Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
            out.push('(');
            let ok = mysql_numeric(inner, kind, out);
            out.push_str(if matches!(expr, Expr::IsNull(_)) {
                ") IS NULL"
            } else {
                ") IS NOT NULL"
            });
            ok
        }
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => {
            out.push_str("NOT (");
            let ok = mysql_numeric(expr, kind, out);
            out.push(')');
            ok
        }
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } if matches!(expr.as_ref(), Expr::Value(_)) => {
            out.push('-');
            mysql_numeric(expr, kind, out)
        }
        Expr::BinaryOp { left, op, right } => {
            let op = match op {
                BinaryOperator::Eq => "=",
                BinaryOperator::NotEq => "<>",
                BinaryOperator::Lt => "<",
                BinaryOperator::LtEq => "<=",
                BinaryOperator::Gt => ">",
                BinaryOperator::GtEq => ">=",
                BinaryOperator::And => "AND",
                BinaryOperator::Or => "OR",
                _ => return false,
            };
            out.push('(');
            let ok = mysql_numeric(left, kind, out);
            out.push_str(&format!(" {op} "));
            let ok = ok && mysql_numeric(right, kind, out);
            out.push(')');
            ok
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            out.push('(');
            let mut ok = mysql_numeric(expr, kind, out);
            out.push_str(if *negated { " NOT IN (" } else { " IN (" });
            for (index, item) in list.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                ok = ok && mysql_numeric(item, kind, out);
            }
            out.push_str("))");
            ok
        }
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            out.push('(');
            let mut ok = mysql_numeric(expr, kind, out);
            out.push_str(if *negated {
                " NOT BETWEEN "
            } else {
                " BETWEEN "
            });
            ok = ok && mysql_numeric(low, kind, out);
            out.push_str(" AND ");
            ok = ok && mysql_numeric(high, kind, out);
            out.push(')');
            ok
        }
        _ => false,
    }
}

fn portable(expr: &Expr) -> bool {
    match expr {
        Expr::Identifier(_) | Expr::Value(_) => true,
        Expr::Nested(inner)
        | Expr::IsNull(inner)
        | Expr::IsNotNull(inner)
        | Expr::IsTrue(inner)
        | Expr::IsFalse(inner)
        | Expr::IsNotTrue(inner)
        | Expr::IsNotFalse(inner) => portable(inner),
        Expr::UnaryOp { op, expr } => {
            matches!(
                op,
                UnaryOperator::Not | UnaryOperator::Minus | UnaryOperator::Plus
            ) && portable(expr)
        }
        Expr::BinaryOp { left, op, right } => {
            matches!(
                op,
                BinaryOperator::Plus
                    | BinaryOperator::Minus
                    | BinaryOperator::Multiply
                    | BinaryOperator::Divide
                    | BinaryOperator::Modulo
                    | BinaryOperator::Eq
                    | BinaryOperator::NotEq
                    | BinaryOperator::Lt
                    | BinaryOperator::LtEq
                    | BinaryOperator::Gt
                    | BinaryOperator::GtEq
                    | BinaryOperator::And
                    | BinaryOperator::Or
                    | BinaryOperator::StringConcat
            ) && portable(left)
                && portable(right)
        }
        Expr::InList { expr, list, .. } => portable(expr) && list.iter().all(portable),
        Expr::Between {
            expr, low, high, ..
        } => portable(expr) && portable(low) && portable(high),
        Expr::Like {
            expr,
            pattern,
            escape_char,
            any,
            ..
        }
        | Expr::ILike {
            expr,
            pattern,
            escape_char,
            any,
            ..
        } => escape_char.is_none() && !any && portable(expr) && portable(pattern),
        Expr::Function(function) => {
            let name = function.name.to_string().to_lowercase();
            if !PORTABLE_FUNCTIONS.contains(&name.as_str()) {
                return false;
            }
            let mut arguments_portable = true;
            let _ = sqlparser::ast::visit_expressions(&function.args, |argument| {
                // visit_expressions walks every node; the top-level arguments decide.
                if !portable_shallow(argument) {
                    arguments_portable = false;
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
            arguments_portable && function.filter.is_none() && function.over.is_none()
        }
        _ => false,
    }
}

/// A node kind allowed anywhere inside a portable expression.
fn portable_shallow(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::Identifier(_)
            | Expr::Value(_)
            | Expr::Nested(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::UnaryOp { .. }
            | Expr::BinaryOp { .. }
            | Expr::InList { .. }
            | Expr::Between { .. }
            | Expr::Like { .. }
            | Expr::ILike { .. }
    ) || matches!(expr, Expr::Function(_) if portable(expr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn pushed(sql: &str) -> Option<String> {
        let expr = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_expr()
            .unwrap();
        render(&expr, Dialect::Postgres, &|_| ColumnKind::Other)
    }

    fn pushed_into_mysql(sql: &str) -> Option<String> {
        let expr = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_expr()
            .unwrap();
        let kind = |name: &str| {
            if ["id", "amount", "qty"].contains(&name) {
                ColumnKind::Number
            } else {
                ColumnKind::Other
            }
        };
        render(&expr, Dialect::Mysql, &kind)
    }

    #[test]
    fn numeric_comparisons_go_into_mysql_and_nothing_that_could_differ() {
        assert_eq!(
            pushed_into_mysql("amount > 100.5 AND (id IN (1, -2) OR qty IS NULL)").as_deref(),
            Some("((`amount` > 100.5) AND (((`id` IN (1, -2)) OR (`qty`) IS NULL)))")
        );
        assert_eq!(
            pushed_into_mysql("NOT id BETWEEN 1 AND 10").as_deref(),
            Some("NOT ((`id` BETWEEN 1 AND 10))")
        );
        // Text compares by collation, integer division makes decimals, UNSIGNED arithmetic
        // can fail: all of it stays in ferry.
        assert_eq!(pushed_into_mysql("name = 'a'"), None);
        assert_eq!(pushed_into_mysql("id / 2 = 1"), None);
        assert_eq!(pushed_into_mysql("qty - 5 > 0"), None);
        assert_eq!(pushed_into_mysql("id = 1 AND lower(name) = 'x'"), None);
    }

    #[test]
    fn portable_filters_render_as_postgres_sql() {
        assert_eq!(
            pushed("\"amount\" > 100 AND lower(\"name\") LIKE 'a%'").as_deref(),
            Some("\"amount\" > 100 AND lower(\"name\") LIKE 'a%'")
        );
        assert!(pushed("\"id\" IN (1, 2, 3) OR \"name\" IS NULL").is_some());
        assert!(pushed("NOT (\"id\" BETWEEN 1 AND 10)").is_some());
    }

    #[test]
    fn everything_else_stays_in_ferry() {
        assert_eq!(pushed("md5(\"name\") = 'x'"), None);
        assert_eq!(pushed("\"name\" ~ 'a.*'"), None);
        assert_eq!(pushed("CAST(\"id\" AS TEXT) = '1'"), None);
        assert_eq!(pushed("lower(md5(\"name\")) = 'x'"), None);
    }
}
