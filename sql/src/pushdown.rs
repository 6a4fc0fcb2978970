//! Which rule filters a source can evaluate itself, rendered in its SQL.
//!
//! A filter is pushed down only when every node in it is one whose meaning is the same in the
//! source engine and in DataFusion: column references, literals, comparisons, `IN`, `BETWEEN`,
//! `LIKE`, `IS [NOT] NULL`, `AND`/`OR`/`NOT`, arithmetic and a short list of scalar functions.
//! Anything else is evaluated by ferry on every batch instead (never dropped).

use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator};

/// SQL engines ferry can push filters into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// The dialect for a source engine name, if filters can be pushed into it.
    pub fn for_engine(engine: &str) -> Option<Dialect> {
        match engine {
            "postgres" => Some(Dialect::Postgres),
            _ => None,
        }
    }
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

/// `expr` in the dialect's SQL, if the source can evaluate it with the same result.
pub fn render(expr: &Expr, dialect: Dialect) -> Option<String> {
    match dialect {
        Dialect::Postgres => portable(expr).then(|| expr.to_string()),
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
        render(&expr, Dialect::Postgres)
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
