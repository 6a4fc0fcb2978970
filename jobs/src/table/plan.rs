//! From a job file to a checked plan: nothing is written here, and every user error (a bad
//! URL, a rule that does not parse, an unknown table or column, a type error, a column type
//! ferry cannot carry, two rules writing one table differently) is found here.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_engine::schema::UNSUPPORTED_KEY;
use ferry_engine::Shape;
use ferry_engine::{
    ChangeRequest, ExistingRows, PrepareOptions, Route, Sink, SnapshotRequest, SnapshotTable,
    Source, TableFlow, TableId, TableSchema, Transform,
};
use ferry_sql::job::ExistingRowsConfig;
use ferry_sql::pushdown;
use ferry_sql::{resolve_rules, JobFile, MigrationType, ResolvedRule, Rule};
use ferry_transforms::Compiler;
use tracing::warn;

use crate::registry::{self, Side};
use crate::JobError;

/// What one rule does with one source table, for `ferry check` and logs.
#[derive(Clone, Debug)]
pub struct RouteDescription {
    /// The rule's index.
    pub rule: usize,
    /// The target table.
    pub target: TableId,
    /// The output columns.
    pub columns: Vec<String>,
    /// The WHERE condition ferry evaluates itself (not pushed down).
    pub filter_in_ferry: Option<String>,
}

/// What is read from one source table.
#[derive(Clone, Debug)]
pub struct TableDescription {
    /// The source table.
    pub source: TableId,
    /// The source's row estimate.
    pub estimated_rows: Option<u64>,
    /// The columns read.
    pub columns: Vec<String>,
    /// The condition the source evaluates.
    pub pushed_down: Option<String>,
    /// Where the rows go.
    pub routes: Vec<RouteDescription>,
}

/// A checked job, ready to run.
pub struct Plan {
    /// The job's name.
    pub name: String,
    /// The source as `host:port/database` (no password).
    pub source_display: String,
    /// The job file.
    pub job: JobFile,
    /// The source.
    pub source: Arc<dyn Source>,
    /// The sink.
    pub sink: Arc<dyn Sink>,
    /// What the snapshot reads.
    pub request: SnapshotRequest,
    /// Where each snapshot table's rows go (indexed like `request.tables`).
    pub flows: Vec<TableFlow>,
    /// Every target table, once.
    pub targets: Vec<TableSchema>,
    /// The plan in words.
    pub tables: Vec<TableDescription>,
    /// The server and database the source reads.
    pub source_identity: ferry_engine::ServerIdentity,
    /// The server and database the sink writes.
    pub sink_identity: ferry_engine::ServerIdentity,
}

impl Plan {
    /// What the job is, beside its name: see [`crate::JobSpec::definition`].
    pub fn definition(&self) -> String {
        crate::spec::definition(&self.job)
    }

    /// The name of the job's change feed at the source (replication slot and publication).
    pub fn feed_name(&self) -> String {
        format!("ferry_{}", self.name)
    }

    /// What the change feed follows: the snapshot's tables and columns.
    pub fn change_request(&self) -> ChangeRequest {
        ChangeRequest {
            name: self.feed_name(),
            definition: self.definition(),
            tables: self.request.tables.clone(),
            batch_size: self.job.migration.batch_size,
            filtered: self
                .tables
                .iter()
                .enumerate()
                .filter(|(_, table)| {
                    table.pushed_down.is_some()
                        || table.routes.iter().any(|r| r.filter_in_ferry.is_some())
                })
                .map(|(index, _)| index)
                .collect(),
        }
    }

    /// The source tables, in plan order.
    pub fn source_tables(&self) -> Vec<TableId> {
        self.request
            .tables
            .iter()
            .map(|t| t.table.id.clone())
            .collect()
    }

    /// How the sink is to treat target tables.
    pub fn prepare_options(&self, dry_run: bool) -> PrepareOptions {
        PrepareOptions {
            create_missing: self.job.runs(MigrationType::Schema),
            existing_rows: match self.job.sink.existing_rows {
                ExistingRowsConfig::Fail => ExistingRows::Fail,
                ExistingRowsConfig::Append => ExistingRows::Append,
                ExistingRowsConfig::Truncate => ExistingRows::Truncate,
            },
            dry_run,
        }
    }
}

/// Reads the source catalog and checks every rule against it. Connects to the source; writes
/// nothing anywhere. `name` is the job's name.
pub async fn plan(job: JobFile, name: String) -> ferry_engine::Result<Plan> {
    let opened = registry::open_source(&job.source.url, job.source.connector_options()?, &name)?;
    let (source, source_display) = (opened.source, opened.display);
    let sink_connector = registry::connector(&job.sink.url, Side::Sink, Some(Shape::Tables))?;
    let sink = registry::open_sink(&job.sink.url, job.sink.connector_options()?)?;
    let incremental = job.runs(MigrationType::Incremental);
    if incremental && !sink_connector.capabilities.applies_changes {
        return Err(JobError::NotIncremental {
            field: "sink.url".into(),
            message: format!("a {} sink takes full migrations only: updates and deletes cannot be applied to it; remove \"incremental\" from migration.types or use a database sink", sink_connector.name),
        }
        .into());
    }
    let rules = job
        .rules
        .iter()
        .enumerate()
        .map(|(index, rule)| Rule::parse(index, &rule.sql))
        .collect::<Result<Vec<_>, _>>()?;
    let catalog = source.catalog().await?;
    let resolved = resolve_rules(&rules, &catalog)?;
    let source_identity = source.identity().await?;
    let sink_identity = sink.identity().await?;
    if source_identity == sink_identity {
        let read: std::collections::BTreeSet<&TableId> =
            resolved.iter().map(|rule| &rule.source.id).collect();
        if let Some(rule) = resolved.iter().find(|rule| read.contains(&rule.target)) {
            return Err(JobError::TargetIsSource {
                rule: rule.rule,
                table: rule.target.clone(),
                name: rule.target.name.clone(),
                place: match source_identity.database {
                    Some(_) => format!("{} server and database", source_identity.engine),
                    None => format!("{} server", source_identity.engine),
                },
            }
            .into());
        }
    }

    // Group the resolved rules by source table, in order of first appearance.
    let mut by_table: Vec<(TableSchema, Vec<ResolvedRule>)> = Vec::new();
    for rule in resolved {
        match by_table
            .iter_mut()
            .find(|(table, _)| table.id == rule.source.id)
        {
            Some((_, rules)) => rules.push(rule),
            None => by_table.push((rule.source.clone(), vec![rule])),
        }
    }

    let dialect = source.filter_dialect();
    let compiler = Compiler::new();
    let mut request_tables = Vec::new();
    let mut flows = Vec::new();
    let mut descriptions = Vec::new();
    let mut targets: BTreeMap<TableId, (usize, TableSchema)> = BTreeMap::new();
    for (table, rules) in by_table {
        let column_kind = |name: &str| match table.columns.field_with_name(name) {
            Ok(field) if field.data_type().is_numeric() => pushdown::ColumnKind::Number,
            _ => pushdown::ColumnKind::Other,
        };
        // Push down the rules' conditions when every rule has one the source can run; with
        // one rule it is exact, with several their OR only narrows what is read.
        let rendered: Option<Vec<String>> = rules
            .iter()
            .map(|rule| {
                rule.filter
                    .as_ref()
                    .and_then(|f| dialect.and_then(|d| pushdown::render(f, d, &column_kind)))
            })
            .collect();
        let pushed_down = rendered.map(|conditions| match conditions.as_slice() {
            [single] => single.clone(),
            many => many
                .iter()
                .map(|c| format!("({c})"))
                .collect::<Vec<_>>()
                .join(" OR "),
        });
        // Changes are filtered by ferry (the source's WHERE only narrows the snapshot), so an
        // incremental job evaluates every rule's condition itself and reads its columns.
        let exact = pushed_down.is_some() && rules.len() == 1 && !incremental;

        let mut columns = std::collections::BTreeSet::new();
        for rule in &rules {
            for index in rule.referenced_columns(!exact) {
                let field = table.columns.field(index);
                if let Some(reason) = field.metadata().get(UNSUPPORTED_KEY) {
                    return Err(JobError::UnsupportedColumn {
                        rule: rule.rule,
                        table: table.id.clone(),
                        column: field.name().clone(),
                        reason: reason.clone(),
                    }
                    .into());
                }
                columns.insert(index);
            }
        }
        let snapshot_table = SnapshotTable {
            table: table.clone(),
            columns: columns.into_iter().collect(),
            filter: pushed_down.clone(),
        };
        let input = snapshot_table.batch_schema();

        let mut routes = Vec::new();
        let mut route_descriptions = Vec::new();
        for rule in &rules {
            let transform = compiler.compile(rule, &input, exact)?;
            let output = transform.output_schema();
            let primary_key = target_key(rule);
            // A table without a key has its changes applied by whole rows (the source's
            // precheck asks for REPLICA IDENTITY FULL); a rule that drops the key of a keyed
            // table cannot be applied by key.
            if incremental && primary_key.is_empty() && !rule.source.primary_key.is_empty() {
                let key: Vec<&str> = rule
                    .source
                    .primary_key
                    .iter()
                    .map(|&i| rule.source.columns.field(i).name().as_str())
                    .collect();
                return Err(JobError::NotIncremental {
                    field: format!("rules[{}].sql", rule.rule),
                    message: format!(
                        "incremental migration applies changes by key: keep the primary-key columns ({}) of {} in the SELECT list as plain columns",
                        key.join(", "),
                        rule.source.id
                    ),
                }
                .into());
            }
            let target = TableSchema {
                id: rule.target.clone(),
                columns: output,
                primary_key,
                estimated_rows: None,
            };
            match targets.get(&target.id) {
                Some((first, existing)) if existing.columns.fields() != target.columns.fields() => {
                    return Err(JobError::TargetConflict {
                        first: *first,
                        second: rule.rule,
                        target: target.id.clone(),
                    }
                    .into());
                }
                Some(_) => {}
                None => {
                    targets.insert(target.id.clone(), (rule.rule, target.clone()));
                }
            }
            route_descriptions.push(RouteDescription {
                rule: rule.rule,
                target: rule.target.clone(),
                columns: rule.columns.iter().map(|c| c.name.clone()).collect(),
                filter_in_ferry: transform
                    .filters()
                    .then(|| rule.filter.as_ref().map(ToString::to_string))
                    .flatten(),
            });
            routes.push(Route {
                transform: Arc::new(transform),
                target,
            });
        }
        descriptions.push(TableDescription {
            source: table.id.clone(),
            estimated_rows: table.estimated_rows,
            columns: input.fields().iter().map(|f| f.name().clone()).collect(),
            pushed_down,
            routes: route_descriptions,
        });
        request_tables.push(snapshot_table);
        flows.push(TableFlow { routes });
    }

    let limit = sink.name_limit();
    for (rule, target) in targets.values() {
        if sink.reserved_schema(&target.id.schema) {
            return Err(JobError::ReservedTarget {
                rule: *rule,
                table: target.id.clone(),
            }
            .into());
        }
        let names = [("schema", &target.id.schema), ("table", &target.id.name)]
            .into_iter()
            .chain(target.columns.fields().iter().map(|f| ("column", f.name())));
        for (what, name) in names {
            if !limit.fits(name) {
                return Err(JobError::NameTooLong {
                    rule: *rule,
                    what,
                    name: name.clone(),
                    limit,
                }
                .into());
            }
        }
    }

    let request = SnapshotRequest {
        tables: request_tables,
        batch_size: job.migration.batch_size,
        parallelism: job.migration.parallelism,
        chunk_rows: job.migration.chunk_rows,
        parts: None,
        ordered: false,
    };
    Ok(Plan {
        name,
        source_display,
        job,
        source,
        sink,
        request,
        flows,
        targets: targets.into_values().map(|(_, target)| target).collect(),
        tables: descriptions,
        source_identity,
        sink_identity,
    })
}

/// The target's primary key: the source key's columns, where the rule keeps every one of
/// them as a plain column; otherwise none (and a warning).
fn target_key(rule: &ResolvedRule) -> Vec<usize> {
    let key: Option<Vec<usize>> = rule
        .source
        .primary_key
        .iter()
        .map(|k| {
            rule.columns
                .iter()
                .position(|c| c.source_column == Some(*k))
        })
        .collect();
    match key {
        Some(key) => key,
        None => {
            warn!(rule = rule.rule, target = %rule.target, "the rule drops a primary-key column, so the target gets no primary key");
            Vec::new()
        }
    }
}
