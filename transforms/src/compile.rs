//! Compiling a resolved rule into a [`RuleTransform`] and applying it to batches.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatchOptions};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::execution::context::SessionState;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, ExprWithAlias};

use ferry_engine::{ChangeBatch, Error, TableId, Transform};
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
        Ok(RuleTransform {
            source: rule.source.id.to_string(),
            target: Arc::new(rule.target.clone()),
            filter,
            projections,
            output: Arc::new(Schema::new(fields)),
        })
    }
}

/// One compiled rule: filter, projection and routing to the target table.
#[derive(Debug)]
pub struct RuleTransform {
    source: String,
    target: Arc<TableId>,
    filter: Option<Arc<dyn PhysicalExpr>>,
    projections: Vec<Arc<dyn PhysicalExpr>>,
    output: SchemaRef,
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
        if let Some(filter) = &self.filter {
            let mask = filter
                .evaluate(&rows)
                .and_then(|value| value.into_array(rows.num_rows()))
                .map_err(|e| self.failed(e.strip_backtrace()))?;
            let mask = mask
                .as_boolean_opt()
                .ok_or_else(|| self.failed("the WHERE condition did not give booleans"))?;
            let kept = mask.true_count();
            if kept == 0 {
                return Ok(None);
            }
            if kept < rows.num_rows() {
                rows = filter_record_batch(&rows, mask).map_err(|e| self.failed(e))?;
                ops = ops.filter(mask).map_err(|e| self.failed(e))?;
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
        let rows = RecordBatch::try_new_with_options(Arc::clone(&self.output), columns, &options)
            .map_err(|e| self.failed(e))?;
        Ok(Some(ChangeBatch {
            table: Arc::clone(&self.target),
            rows,
            ops,
            position: batch.position.clone(),
            source_bytes: batch.source_bytes,
        }))
    }
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
    fn runtime_failures_name_the_table() {
        let transform = compile("SELECT id, CAST(name AS INT) AS n FROM shop.orders").unwrap();
        let error = transform.apply(&batch()).unwrap_err().to_string();
        assert!(error.contains("shop.orders"), "{error}");
    }
}
