//! Compiling a resolved rule into a [`RuleTransform`] and applying it to batches.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatchOptions, UInt8Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::execution::context::SessionState;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, ExprWithAlias};

use ferry_engine::{ChangeBatch, Error, Op, Ops, TableId, Transform};
use ferry_sql::ResolvedRule;

use crate::error::TransformError;

/// Compiles rules; holds the DataFusion session (function registry, config) they share.
pub struct Compiler {
    state: SessionState,
}

impl Default for Compiler {
    fn default() -> Self {
        Compiler::new()
    }
}

impl Compiler {
    /// A compiler with DataFusion's default functions.
    pub fn new() -> Compiler {
        Compiler {
            state: SessionContext::new().state(),
        }
    }

    /// Compiles `rule` for batches of `input` (the columns the snapshot reads, in order).
    /// With `filter_done_by_source`, the rule's WHERE was pushed down exactly and is not
    /// evaluated again: it is type-checked against the whole source table instead, since the
    /// columns only it uses are not read.
    pub fn compile(
        &self,
        rule: &ResolvedRule,
        input: &SchemaRef,
        filter_done_by_source: bool,
    ) -> Result<RuleTransform, TransformError> {
        let table = rule.source.id.to_string();
        let to_df_schema = |schema: &SchemaRef| {
            DFSchema::try_from(Arc::clone(schema)).map_err(|e| TransformError::Plan {
                rule: rule.rule,
                table: table.clone(),
                expr: "*".into(),
                message: e.to_string(),
            })
        };
        let df_schema = to_df_schema(input)?;
        let full_df_schema = to_df_schema(&rule.source.columns)?;
        let plan_in = |expr: &SqlExpr,
                       df_schema: &DFSchema|
         -> Result<Arc<dyn PhysicalExpr>, TransformError> {
            let error = |e: datafusion::error::DataFusionError| TransformError::Plan {
                rule: rule.rule,
                table: table.clone(),
                expr: expr.to_string(),
                message: e.strip_backtrace().to_string(),
            };
            let logical = self
                .state
                .create_logical_expr_from_sql_expr(
                    ExprWithAlias {
                        expr: expr.clone(),
                        alias: None,
                    },
                    df_schema,
                )
                .map_err(error)?;
            if let Some(function) = not_deterministic(&logical) {
                return Err(TransformError::NotDeterministic {
                    rule: rule.rule,
                    table: table.clone(),
                    expr: expr.to_string(),
                    function,
                });
            }
            self.state
                .create_physical_expr(logical, df_schema)
                .map_err(error)
        };
        let plan = |expr: &SqlExpr| plan_in(expr, &df_schema);

        let mut projections = Vec::with_capacity(rule.columns.len());
        let mut fields = Vec::with_capacity(rule.columns.len());
        for column in &rule.columns {
            let physical = plan(&column.expr)?;
            let source_field = column.source_column.and_then(|i| {
                input
                    .field_with_name(rule.source.columns.field(i).name())
                    .ok()
            });
            let field = match source_field {
                Some(field) => field.clone().with_name(&column.name),
                None => {
                    let describe = |e: datafusion::error::DataFusionError| TransformError::Plan {
                        rule: rule.rule,
                        table: table.clone(),
                        expr: column.expr.to_string(),
                        message: e.strip_backtrace().to_string(),
                    };
                    let data_type = physical.data_type(input).map_err(describe)?;
                    let nullable = physical.nullable(input).map_err(describe)?;
                    Field::new(&column.name, data_type, nullable)
                }
            };
            projections.push(physical);
            fields.push(field);
        }

        let filter = match &rule.filter {
            Some(condition) => {
                let (physical, schema) = if filter_done_by_source {
                    (plan_in(condition, &full_df_schema)?, &rule.source.columns)
                } else {
                    (plan(condition)?, input)
                };
                let data_type = physical
                    .data_type(schema)
                    .map_err(|e| TransformError::Plan {
                        rule: rule.rule,
                        table: table.clone(),
                        expr: condition.to_string(),
                        message: e.strip_backtrace().to_string(),
                    })?;
                if !matches!(data_type, DataType::Boolean | DataType::Null) {
                    return Err(TransformError::NotBoolean {
                        rule: rule.rule,
                        table,
                        expr: condition.to_string(),
                        data_type: data_type.to_string(),
                    });
                }
                (!filter_done_by_source).then_some(physical)
            }
            None => None,
        };
        let projection_inputs = projections.iter().map(input_columns).collect();
        let filter_inputs = filter.as_ref().map(input_columns).unwrap_or_default();
        Ok(RuleTransform {
            source: rule.source.id.to_string(),
            target: Arc::new(rule.target.clone()),
            filter,
            filter_inputs,
            projections,
            projection_inputs,
            changes_output: Arc::new(Schema::new(
                fields
                    .iter()
                    .map(|field| field.clone().with_nullable(true))
                    .collect::<Vec<_>>(),
            )),
            output: Arc::new(Schema::new(fields)),
        })
    }
}

/// The first function in `expr` whose result is not a function of its arguments alone
/// (`now()`, `random()`, `uuid()`): a rule must give a row the same value every time it is
/// read — on resume, in verify, for each change.
fn not_deterministic(expr: &datafusion::logical_expr::Expr) -> Option<String> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Expr, Volatility};
    let mut found = None;
    let _ = expr.apply(|node| {
        if let Expr::ScalarFunction(call) = node {
            if call.func.signature().volatility != Volatility::Immutable {
                found = Some(call.func.name().to_string());
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The input columns an expression reads, by index, in order.
fn input_columns(expr: &Arc<dyn PhysicalExpr>) -> Vec<usize> {
    let mut columns: Vec<usize> = collect_columns(expr)
        .into_iter()
        .map(|column| column.index())
        .collect();
    columns.sort_unstable();
    columns
}

/// One compiled rule: filter, projection and routing to the target table.
///
/// On change batches the filter is op-aware, so the sink always equals the rule's SELECT over
/// the source: an insert that fails it is dropped; an update whose new image fails it becomes
/// a delete (of the old and the new key: the row leaves the target, or never enters it); an
/// update whose new image passes stays an update (an upsert at the sink, so a row moving into
/// the filter is inserted); deletes and old images always pass, since deleting a row the
/// target does not hold is harmless.
#[derive(Debug)]
pub struct RuleTransform {
    source: String,
    target: Arc<TableId>,
    filter: Option<Arc<dyn PhysicalExpr>>,
    filter_inputs: Vec<usize>,
    projections: Vec<Arc<dyn PhysicalExpr>>,
    projection_inputs: Vec<Vec<usize>>,
    output: SchemaRef,
    /// `output` with every column nullable, for change batches: a delete carries only the
    /// key, the other values are NULL whatever the column allows.
    changes_output: SchemaRef,
}

impl RuleTransform {
    /// The target table.
    pub fn target(&self) -> &TableId {
        &self.target
    }

    /// Whether the rule's filter runs here (false when there is none or the source ran it).
    pub fn filters(&self) -> bool {
        self.filter.is_some()
    }

    /// The rule's WHERE on `rows` (batches of the source's columns, as compiled for): true,
    /// false or NULL for each row; `None` when the rule has no filter to run here. For sources
    /// whose rows are not table changes (Redis keys) and decide for themselves what NULL means.
    pub fn condition(&self, rows: &RecordBatch) -> ferry_engine::Result<Option<BooleanArray>> {
        let Some(filter) = &self.filter else {
            return Ok(None);
        };
        let mask = filter
            .evaluate(rows)
            .and_then(|value| value.into_array(rows.num_rows()))
            .map_err(|e| self.failed(e.strip_backtrace()))?;
        mask.as_boolean_opt()
            .cloned()
            .map(Some)
            .ok_or_else(|| self.failed("the WHERE condition did not give booleans"))
    }

    fn failed(&self, message: impl std::fmt::Display) -> Error {
        Error::Transform {
            table: self.source.clone(),
            message: message.to_string(),
        }
    }
}

impl Transform for RuleTransform {
    fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    fn apply(&self, batch: &ChangeBatch) -> ferry_engine::Result<Option<ChangeBatch>> {
        let mut rows = batch.rows.clone();
        let mut ops = batch.ops.clone();
        let mut unchanged = batch.unchanged.clone();
        if self.filter.is_some() {
            if let Some(missing) = &unchanged {
                if let Some(column) = self
                    .filter_inputs
                    .iter()
                    .find(|&&c| missing.column(c).is_some())
                {
                    return Err(self.failed(format!(
                        "the WHERE condition reads column {}, whose unchanged TOASTed value the source did not send; run ALTER TABLE {} REPLICA IDENTITY FULL on the source so updates carry it",
                        rows.schema().field(*column).name(),
                        self.source
                    )));
                }
            }
            let mask = self.condition(&rows)?.expect("the rule has a filter");
            let (keep, new_ops) = match &ops {
                Ops::AllInsert => (mask, None),
                Ops::PerRow(codes) => {
                    let (keep, codes) = filter_changes(codes, &mask);
                    (keep, Some(Ops::PerRow(codes)))
                }
            };
            if let Some(new_ops) = new_ops {
                ops = new_ops;
            }
            let kept = keep.true_count();
            if kept == 0 {
                return Ok(None);
            }
            if kept < rows.num_rows() {
                rows = filter_record_batch(&rows, &keep).map_err(|e| self.failed(e))?;
                ops = ops.filter(&keep).map_err(|e| self.failed(e))?;
                unchanged = match unchanged {
                    Some(missing) => missing.filter(&keep).map_err(|e| self.failed(e))?,
                    None => None,
                };
            }
        }
        let columns = self
            .projections
            .iter()
            .map(|projection| {
                projection
                    .evaluate(&rows)
                    .and_then(|value| value.into_array(rows.num_rows()))
            })
            .collect::<Result<Vec<ArrayRef>, _>>()
            .map_err(|e| self.failed(e.strip_backtrace()))?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows.num_rows()));
        let schema = match ops {
            Ops::AllInsert => &self.output,
            Ops::PerRow(_) => &self.changes_output,
        };
        let rows = RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)
            .map_err(|e| self.failed(e))?;
        let unchanged = match unchanged {
            Some(missing) => missing
                .project(&self.projection_inputs)
                .map_err(|e| self.failed(e))?,
            None => None,
        };
        Ok(Some(ChangeBatch {
            table: Arc::clone(&self.target),
            rows,
            ops,
            position: batch.position.clone(),
            source_bytes: batch.source_bytes,
            unchanged,
        }))
    }
}

/// Applies a WHERE mask to change ops (see [`RuleTransform`]): which rows to keep, and the ops
/// with failing updates turned into deletes. A NULL in the mask counts as false.
fn filter_changes(codes: &UInt8Array, mask: &BooleanArray) -> (BooleanArray, UInt8Array) {
    let passes = |row: usize| mask.is_valid(row) && mask.value(row);
    let mut ops: Vec<u8> = codes.values().to_vec();
    let mut keep = Vec::with_capacity(ops.len());
    for row in 0..ops.len() {
        match Op::from_code(ops[row]) {
            Some(Op::Insert) => keep.push(passes(row)),
            Some(Op::UpdateAfter) if !passes(row) => {
                ops[row] = Op::Delete as u8;
                if row > 0 && ops[row - 1] == Op::UpdateBefore as u8 {
                    ops[row - 1] = Op::Delete as u8;
                }
                keep.push(true);
            }
            _ => keep.push(true),
        }
    }
    (BooleanArray::from(keep), UInt8Array::from(ops))
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::Int64Type;
    use ferry_engine::{Position, TableSchema};
    use ferry_sql::{resolve_rules, Rule};

    use super::*;

    fn table() -> TableSchema {
        TableSchema {
            id: TableId::new("shop", "orders"),
            columns: Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("name", DataType::Utf8, true),
                Field::new("amount", DataType::Int64, true),
            ])),
            primary_key: vec![0],
            estimated_rows: None,
        }
    }

    fn compile(sql: &str) -> Result<RuleTransform, TransformError> {
        let table = table();
        let rules = resolve_rules(
            &[Rule::parse(0, sql).unwrap()],
            std::slice::from_ref(&table),
        )
        .unwrap();
        Compiler::new().compile(&rules[0], &table.columns, false)
    }

    fn batch() -> ChangeBatch {
        let table = table();
        let rows = RecordBatch::try_new(
            table.columns,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                Arc::new(StringArray::from(vec![
                    Some("ann"),
                    None,
                    Some("bo"),
                    Some("cy"),
                ])),
                Arc::new(Int64Array::from(vec![Some(50), Some(150), None, Some(500)])),
            ],
        )
        .unwrap();
        ChangeBatch::snapshot(
            Arc::new(table.id),
            rows,
            Position::Snapshot { part: 0, offset: 0 },
            0,
        )
    }

    #[test]
    fn filters_projects_renames_and_routes() {
        let transform = compile(
            "INSERT INTO sales.big_orders SELECT id, upper(name) AS full_name, amount * 2 AS doubled FROM shop.orders WHERE amount > 100",
        )
        .unwrap();
        let out = transform.apply(&batch()).unwrap().unwrap();
        assert_eq!(out.table.to_string(), "sales.big_orders");
        assert_eq!(out.rows.schema().field(1).name(), "full_name");
        let ids: Vec<i64> = out
            .rows
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(ids, [2, 4], "NULL amounts do not pass amount > 100");
        let names = out.rows.column(1).as_string::<i32>();
        assert!(names.is_null(0));
        assert_eq!(names.value(1), "CY");
        assert_eq!(
            out.rows.column(2).as_primitive::<Int64Type>().value(1),
            1000
        );
    }

    #[test]
    fn a_batch_filtered_to_nothing_yields_none() {
        let transform = compile("SELECT * FROM shop.orders WHERE name LIKE 'z%'").unwrap();
        assert!(transform.apply(&batch()).unwrap().is_none());
    }

    #[test]
    fn type_errors_are_found_at_compile_time() {
        let error = compile("SELECT id FROM shop.orders WHERE amount + 1")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a boolean condition"), "{error}");
        let error = compile("SELECT no_such_function(id) AS x FROM shop.orders")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("rules[0].sql: "), "{error}");
        assert!(error.contains("no_such_function"), "{error}");
    }

    #[test]
    fn functions_whose_value_changes_between_runs_are_refused() {
        for (sql, function) in [
            ("SELECT id, now() AS at FROM shop.orders", "now"),
            ("SELECT * FROM shop.orders WHERE random() < 0.5", "random"),
            ("SELECT id, uuid() AS u FROM shop.orders", "uuid"),
            (
                "SELECT id, upper(name) || current_date AS d FROM shop.orders",
                "current_date",
            ),
        ] {
            let error = compile(sql).unwrap_err().to_string();
            assert!(
                error.contains(&format!("{function}() is not deterministic")),
                "{sql}: {error}"
            );
        }
        compile("SELECT id, upper(name) AS n FROM shop.orders WHERE abs(amount) > 1").unwrap();
    }

    /// The batch of `batch()` as changes: insert 1, update 2 (old image, new image), delete 4.
    fn changes(unchanged_name: bool) -> ChangeBatch {
        let mut changes = batch();
        changes.ops = Ops::PerRow(UInt8Array::from(vec![
            Op::Insert as u8,
            Op::UpdateBefore as u8,
            Op::UpdateAfter as u8,
            Op::Delete as u8,
        ]));
        changes.unchanged = ferry_engine::Unchanged::new(vec![
            None,
            unchanged_name.then(|| BooleanArray::from(vec![false, false, true, false])),
            None,
        ]);
        changes
    }

    fn ops(batch: &ChangeBatch) -> Vec<Op> {
        (0..batch.num_rows()).map(|i| batch.ops.op(i)).collect()
    }

    #[test]
    fn filters_turn_updates_leaving_the_where_into_deletes() {
        // amount: 50 (insert), 150 (old image), NULL (new image), 500 (delete).
        let transform = compile("SELECT id, name FROM shop.orders WHERE amount > 100").unwrap();
        let out = transform.apply(&changes(false)).unwrap().unwrap();
        // The insert fails the filter and goes; the update's new image fails it, so the row
        // leaves the target: both images become deletes; the delete stays.
        assert_eq!(ops(&out), [Op::Delete, Op::Delete, Op::Delete]);
        assert_eq!(
            out.rows.column(0).as_primitive::<Int64Type>().values(),
            &[2, 3, 4]
        );

        let transform = compile("SELECT id, name FROM shop.orders WHERE amount IS NULL").unwrap();
        let out = transform.apply(&changes(false)).unwrap().unwrap();
        // Now the new image passes: the update stays an update (an upsert at the sink).
        assert_eq!(ops(&out), [Op::UpdateBefore, Op::UpdateAfter, Op::Delete]);
    }

    #[test]
    fn values_not_sent_stay_marked_through_projections_and_block_filters() {
        let transform =
            compile("SELECT id, upper(name) AS shout, amount FROM shop.orders").unwrap();
        let out = transform.apply(&changes(true)).unwrap().unwrap();
        let unchanged = out.unchanged.expect("the mark follows the column");
        assert!(
            unchanged.is_unchanged(1, 2),
            "computed from a value not sent"
        );
        assert!(!unchanged.is_unchanged(0, 2) && !unchanged.is_unchanged(2, 2));
        assert!(
            out.rows.schema().field(0).is_nullable(),
            "a delete carries only the key: change batches allow NULL in every column"
        );

        let transform = compile("SELECT id FROM shop.orders WHERE name LIKE 'a%'").unwrap();
        let error = transform.apply(&changes(true)).unwrap_err().to_string();
        assert!(
            error.contains("REPLICA IDENTITY FULL") && error.contains("column name"),
            "{error}"
        );
    }

    #[test]
    fn runtime_failures_name_the_table() {
        let transform = compile("SELECT id, CAST(name AS INT) AS n FROM shop.orders").unwrap();
        let error = transform.apply(&batch()).unwrap_err().to_string();
        assert!(error.contains("shop.orders"), "{error}");
    }
}
