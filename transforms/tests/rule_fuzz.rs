//! Many random rules — valid ones mutated, and rules built from random tokens — through
//! everything a rule goes through before a job writes: parsing, resolution against a
//! catalog, push-down rendering and compilation with DataFusion. Each is accepted or refused
//! with an error; none panics or overflows the stack. Fixed seed: a failure repeats, and its
//! input is printed.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use ferry_engine::{TableId, TableSchema};
use ferry_sql::pushdown::{self, ColumnKind, Dialect};
use ferry_sql::{resolve_rules, Rule};
use ferry_testkit::cli::Dice;
use ferry_transforms::Compiler;

fn catalog() -> Vec<TableSchema> {
    let table = |schema: &str, name: &str, columns: Vec<Field>| TableSchema {
        id: TableId::new(schema, name),
        columns: Arc::new(Schema::new(columns)),
        primary_key: vec![0],
        estimated_rows: Some(10),
    };
    vec![
        table(
            "shop",
            "orders",
            vec![
                Field::new("id", DataType::Int64, false),
                Field::new("name", DataType::Utf8, true),
                Field::new("amount", DataType::Float64, true),
                Field::new("Email", DataType::Utf8, true),
            ],
        ),
        table(
            "shop",
            "o'd\"d",
            vec![
                Field::new("id", DataType::Int32, false),
                Field::new("co\"l", DataType::Utf8, true),
            ],
        ),
    ]
}

const VALID: &[&str] = &[
    "INSERT INTO sales.big_orders SELECT id, name AS full_name FROM shop.orders WHERE amount > 100",
    "SELECT * FROM shop.ord* WHERE id IN (1, 2, 3) AND name LIKE 'a%'",
    r#"INSERT INTO 'archive.${1}_old' SELECT * FROM 'shop\.(ord.*)' WHERE name = 'O''Brien'"#,
    r#"SELECT id, upper("Email") AS e, amount * 2 AS a FROM shop.orders o WHERE o.amount BETWEEN 1 AND 2 OR name IS NULL"#,
    r#"SELECT "co""l" FROM shop."o'd""d" WHERE "co""l" <> 'x'"#,
    "SELECT id, CASE WHEN amount > 1 THEN 'big' ELSE 'small' END AS size FROM shop.orders WHERE NOT (id % 2 = 0)",
];

const TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "INSERT",
    "INTO",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS",
    "NULL",
    "LIKE",
    "BETWEEN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "CAST",
    "::",
    "(",
    ")",
    ",",
    ".",
    "*",
    "+",
    "-",
    "/",
    "%",
    "||",
    "=",
    "<>",
    "<",
    ">=",
    "'",
    "''",
    "\"",
    "$$",
    "E'\\'",
    "--",
    "/*",
    "*/",
    ";",
    "id",
    "name",
    "amount",
    "\"Email\"",
    "shop",
    "orders",
    "shop.orders",
    "shop.*",
    "*.*",
    "'shop\\.(.*)'",
    "'${1}'",
    "1",
    "-1",
    "1e400",
    "0.1",
    "'x'",
    "now()",
    "random()",
    "upper(",
    "abs(",
    "coalesce(",
    "nosuch(",
    "interval '1 month'",
    "TRUE",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "JOIN",
    "UNION",
    "WITH",
    "(SELECT 1)",
    "EXISTS",
    "\n",
    " ",
    "é",
    "\u{0}",
    "\u{10ffff}",
];

fn mutate(dice: &mut Dice, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..1 + dice.index(2) {
        let at = dice.index(chars.len() + 1);
        match dice.index(4) {
            0 if !chars.is_empty() => {
                let end = (at + dice.index(8)).min(chars.len());
                chars.drain(at.min(end)..end);
            }
            1 if !chars.is_empty() => {
                let start = dice.index(chars.len());
                let end = (start + dice.index(30)).min(chars.len());
                let copy: Vec<char> = chars[start..end].to_vec();
                chars.splice(at..at, copy);
            }
            _ => {
                let piece = format!(" {} ", *dice.pick(TOKENS));
                chars.splice(at..at, piece.chars());
            }
        }
    }
    chars.into_iter().collect()
}

fn random_rule(dice: &mut Dice) -> String {
    let mut rule = String::from("SELECT ");
    for _ in 0..dice.index(40) {
        let token: &&str = dice.pick(TOKENS);
        rule.push_str(token);
        rule.push(' ');
    }
    rule
}

/// Everything a rule goes through before a job writes; errors are fine, panics are not.
fn through_everything(sql: &str, catalog: &[TableSchema], compiler: &Compiler) -> bool {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Ok(rule) = Rule::parse(0, sql) else {
            return false;
        };
        let Ok(resolved) = resolve_rules(&[rule], catalog) else {
            return false;
        };
        for rule in &resolved {
            if let Some(filter) = &rule.filter {
                for dialect in [Dialect::Postgres, Dialect::Mysql] {
                    let _ = pushdown::render(filter, dialect, &|_| ColumnKind::Number);
                }
            }
            let _ = compiler.compile(rule, &rule.source.columns, false);
            let _ = compiler.compile(rule, &rule.source.columns, true);
        }
        true
    }));
    match outcome {
        Ok(resolved) => resolved,
        Err(_) => panic!("a rule crashed ferry's checks:\n{sql}"),
    }
}

#[test]
fn mutated_and_random_rules_are_accepted_or_refused_never_a_crash() {
    let catalog = catalog();
    let compiler = Compiler::new();
    let mut dice = Dice(0xf00d_cafe);
    for rule in VALID {
        assert!(through_everything(rule, &catalog, &compiler), "{rule}");
    }
    let rounds = 40_000;
    let mut resolved = 0;
    for round in 0..rounds {
        let sql = if round % 3 == 0 {
            random_rule(&mut dice)
        } else {
            let base = *dice.pick(VALID);
            mutate(&mut dice, base)
        };
        resolved += usize::from(through_everything(&sql, &catalog, &compiler));
    }
    assert!(
        resolved > 0,
        "no mutated rule still resolved: the fuzz explores nothing"
    );
    println!("rule fuzz: {rounds} rules, {resolved} resolved and compiled, none crashed");
}
