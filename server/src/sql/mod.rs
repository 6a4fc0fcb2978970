//! The SQL control plane: `ferry serve --pg ADDR` speaks the PostgreSQL wire protocol
//! (pgwire), so `psql` and any PostgreSQL driver drive the jobs — ferry's statements
//! ([`grammar`]) and full SQL over the read-only `ferry.*` tables ([`tables`], DataFusion).
//! Both the simple and the extended query protocol; SCRAM-SHA-256 with the service's token
//! as the password when it has one; TLS when given a certificate.

pub mod execute;
pub mod grammar;
pub mod tables;

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array,
    RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::scalar::ScalarValue;
use futures::{stream, Sink, SinkExt};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DataRowEncoder, DescribePortalResponse, DescribeResponse, DescribeStatementResponse,
    FieldFormat, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::NoticeResponse;
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::lifecycle::Action;
use crate::service::Service;
use execute::{Answer, Reply, SqlError};
use grammar::Statement;

/// The server version the SQL control plane reports (drivers parse its leading number).
pub const SERVER_VERSION: &str = "15.0";

/// SCRAM iterations for the token (PostgreSQL's default).
const SCRAM_ITERATIONS: usize = 4096;

/// How the SQL control plane runs.
pub struct SqlFront {
    handler: Arc<Handler>,
    startup: Arc<Startup>,
}

impl SqlFront {
    /// A front over `service`; `password` (the service's token) is asked of every client
    /// with SCRAM-SHA-256 when given; `tls`: clients from other hosts must use TLS.
    pub fn new(service: Arc<Service>, password: Option<&str>, tls: bool) -> SqlFront {
        let scram = password.map(|password| {
            let salt = crate::cloud::random_bytes(16);
            let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
            let mut scram = ScramAuth::new(Arc::new(TokenSource { salt, salted }));
            scram.set_iterations(SCRAM_ITERATIONS);
            SASLAuthStartupHandler::new(Arc::new(parameters())).with_scram(scram)
        });
        SqlFront {
            handler: Arc::new(Handler { service }),
            startup: Arc::new(Startup { scram, tls }),
        }
    }
}

fn parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = SERVER_VERSION.to_string();
    parameters.search_path = tables::SCHEMA.to_string();
    parameters
}

impl PgWireServerHandlers for SqlFront {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.handler)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.handler)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }
}

/// Serves `listener` until `shutdown`: one task per connection.
pub async fn serve(
    listener: tokio::net::TcpListener,
    front: Arc<SqlFront>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, peer)) => {
                debug!(%peer, "sql connection");
                let front = Arc::clone(&front);
                let tls = tls.clone();
                tokio::spawn(async move {
                    if let Err(error) = pgwire::tokio::process_socket(socket, tls, front).await {
                        debug!(%peer, %error, "sql connection ended with an error");
                    }
                });
            }
            Err(error) => {
                info!(%error, "accepting a sql connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// The TLS acceptor of `cert` and `key` (PEM files).
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<pgwire::tokio::TlsAcceptor, String> {
    use pgwire::tokio::tokio_rustls::rustls;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "certificate {} holds no certificate",
            cert.display()
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("key {}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| format!("certificate and key: {e}"))?;
    Ok(pgwire::tokio::TlsAcceptor::from(Arc::new(config)))
}

/// The service's token as every user's SCRAM password.
#[derive(Debug)]
struct TokenSource {
    salt: Vec<u8>,
    salted: Vec<u8>,
}

#[async_trait]
impl AuthSource for TokenSource {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(Some(self.salt.clone()), self.salted.clone()))
    }
}

/// Startup: SCRAM when the service has a token, else open (loopback only); with a
/// certificate, clients from other hosts must use TLS (their statements carry URLs with
/// passwords).
struct Startup {
    scram: Option<SASLAuthStartupHandler<DefaultServerParameterProvider>>,
    tls: bool,
}

/// The startup without authentication.
struct Open;

#[async_trait]
impl NoopStartupHandler for Open {
    async fn post_startup<C>(
        &self,
        client: &mut C,
        _message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // The no-auth startup announces pgwire's own version; this one is the last word.
        for (name, value) in [
            ("server_version", SERVER_VERSION),
            ("search_path", tables::SCHEMA),
        ] {
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name.to_string(),
                    value.to_string(),
                )))
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if self.tls
            && matches!(message, PgWireFrontendMessage::Startup(_))
            && !client.is_secure()
            && !client.socket_addr().ip().is_loopback()
        {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                "this server takes connections from other hosts over TLS only: connect with sslmode=require".into(),
            ))));
        }
        match &self.scram {
            Some(scram) => scram.on_startup(client, message).await,
            None => Open.on_startup(client, message).await,
        }
    }
}

/// Runs the statements of both protocols.
struct Handler {
    service: Arc<Service>,
}

/// A statement prepared by the extended protocol: parsed, its rows' schema and its
/// parameters' types known before it runs.
#[derive(Clone, Debug)]
pub struct Prepared {
    statement: Statement,
    schema: Option<SchemaRef>,
    params: Vec<Option<DataType>>,
}

impl SqlError {
    fn info(&self) -> ErrorInfo {
        let mut info = ErrorInfo::new("ERROR".into(), self.code.into(), self.message.clone());
        info.detail = self.detail.clone();
        info.hint = self.hint.clone();
        info.position = self.position.map(|p| p.to_string());
        info
    }

    fn wire(&self) -> PgWireError {
        PgWireError::UserError(Box::new(self.info()))
    }
}

fn syntax(error: grammar::SyntaxError) -> SqlError {
    let mut sql = SqlError::new("42601", error.message);
    sql.position = Some(error.position);
    sql
}

async fn notices<C>(client: &mut C, answer: &Answer) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for notice in &answer.notices {
        let info = ErrorInfo::new("NOTICE".into(), "00000".into(), notice.clone());
        client
            .feed(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                info,
            )))
            .await?;
    }
    Ok(())
}

/// `answer` as pgwire's response, rows in `format` (and of `described`'s types when the
/// statement was described before it ran).
fn response(
    answer: Answer,
    format: &Format,
    described: Option<&SchemaRef>,
) -> PgWireResult<Response> {
    Ok(match answer.reply {
        Reply::Rows { schema, batches } => {
            let announced = described
                .filter(|d| d.fields().len() == schema.fields().len())
                .unwrap_or(&schema);
            let (fields, columns) = canonical(announced, format);
            let fields = Arc::new(fields);
            let mut rows = Vec::new();
            for batch in &batches {
                encode(&fields, &columns, batch, &mut rows)?;
            }
            Response::Query(QueryResponse::new(fields, stream::iter(rows)))
        }
        Reply::Tag(tag) => Response::Execution(Tag::new(&tag)),
        Reply::Begin => Response::TransactionStart(Tag::new("BEGIN")),
        Reply::End(tag) => Response::TransactionEnd(Tag::new(tag)),
    })
}

/// What a column is sent as: the Arrow type it is cast to and the PostgreSQL type.
fn wire_type(data_type: &DataType) -> (DataType, Type) {
    match data_type {
        DataType::Boolean => (DataType::Boolean, Type::BOOL),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => (DataType::Int16, Type::INT2),
        DataType::Int32 | DataType::UInt16 => (DataType::Int32, Type::INT4),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => (DataType::Int64, Type::INT8),
        DataType::Float16 | DataType::Float32 => (DataType::Float32, Type::FLOAT4),
        DataType::Float64 | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            (DataType::Float64, Type::FLOAT8)
        }
        DataType::Timestamp(_, Some(zone)) => (
            DataType::Timestamp(TimeUnit::Microsecond, Some(zone.clone())),
            Type::TIMESTAMPTZ,
        ),
        DataType::Timestamp(_, None) => (
            DataType::Timestamp(TimeUnit::Microsecond, None),
            Type::TIMESTAMP,
        ),
        _ => (DataType::Utf8, Type::TEXT),
    }
}

/// The fields as sent, and each column's Arrow type to cast to.
fn canonical(schema: &Schema, format: &Format) -> (Vec<FieldInfo>, Vec<DataType>) {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let (arrow_type, pg_type) = wire_type(field.data_type());
            (
                FieldInfo::new(
                    field.name().clone(),
                    None,
                    None,
                    pg_type,
                    format.format_for(i),
                ),
                arrow_type,
            )
        })
        .unzip()
}

fn encode(
    fields: &Arc<Vec<FieldInfo>>,
    types: &[DataType],
    batch: &RecordBatch,
    rows: &mut Vec<PgWireResult<pgwire::messages::data::DataRow>>,
) -> PgWireResult<()> {
    let arrays: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(types)
        .map(|(column, to)| arrow::compute::cast(column, to))
        .collect::<Result<_, _>>()
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    // Each column is told apart once per batch, not once per value.
    let columns: Vec<(Column<'_>, FieldFormat)> = arrays
        .iter()
        .zip(fields.iter())
        .map(|(array, field)| Column::of(array.as_ref()).map(|c| (c, field.format())))
        .collect::<PgWireResult<_>>()?;
    let mut encoder = DataRowEncoder::new(Arc::clone(fields));
    for row in 0..batch.num_rows() {
        for (column, format) in &columns {
            column.encode(&mut encoder, row, *format)?;
        }
        rows.push(Ok(encoder.take_row()));
    }
    Ok(())
}

/// A float as PostgreSQL writes it in text: the shortest exact form (`100`, `0.1`).
fn float_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        value.to_string()
    }
}

/// An f32 as PostgreSQL writes a `real`: its own shortest form, not an f64's.
fn float_text_f32(value: f32) -> String {
    if value.is_finite() {
        value.to_string()
    } else {
        float_text(f64::from(value))
    }
}

/// A column of one of the types [`wire_type`] casts to.
enum Column<'a> {
    Bool(&'a BooleanArray),
    Int16(&'a Int16Array),
    Int32(&'a Int32Array),
    Int64(&'a Int64Array),
    Float32(&'a Float32Array),
    Float64(&'a Float64Array),
    Time(&'a TimestampMicrosecondArray),
    Text(&'a StringArray),
}

impl<'a> Column<'a> {
    fn of(array: &'a dyn Array) -> PgWireResult<Column<'a>> {
        let any = array.as_any();
        let column = if let Some(a) = any.downcast_ref() {
            Column::Bool(a)
        } else if let Some(a) = any.downcast_ref() {
            Column::Int16(a)
        } else if let Some(a) = any.downcast_ref() {
            Column::Int32(a)
        } else if let Some(a) = any.downcast_ref() {
            Column::Int64(a)
        } else if let Some(a) = any.downcast_ref() {
            Column::Float32(a)
        } else if let Some(a) = any.downcast_ref() {
            Column::Float64(a)
        } else if let Some(a) = any.downcast_ref() {
            Column::Time(a)
        } else if let Some(a) = any.downcast_ref() {
            Column::Text(a)
        } else {
            return Err(PgWireError::ApiError(
                format!("a column of type {} cannot be sent", array.data_type()).into(),
            ));
        };
        Ok(column)
    }

    fn is_null(&self, row: usize) -> bool {
        match self {
            Column::Bool(a) => a.is_null(row),
            Column::Int16(a) => a.is_null(row),
            Column::Int32(a) => a.is_null(row),
            Column::Int64(a) => a.is_null(row),
            Column::Float32(a) => a.is_null(row),
            Column::Float64(a) => a.is_null(row),
            Column::Time(a) => a.is_null(row),
            Column::Text(a) => a.is_null(row),
        }
    }

    fn encode(
        &self,
        encoder: &mut DataRowEncoder,
        row: usize,
        format: FieldFormat,
    ) -> PgWireResult<()> {
        if self.is_null(row) {
            return encoder.encode_field(&None::<i64>);
        }
        // Floats in text as PostgreSQL writes them (pgwire's own text keeps a trailing `.0`).
        let float = |encoder: &mut DataRowEncoder, text: String, pg: &Type| {
            encoder.encode_field_with_type_and_format(&text, pg, format, &Default::default())
        };
        match self {
            Column::Bool(a) => encoder.encode_field(&a.value(row)),
            Column::Int16(a) => encoder.encode_field(&a.value(row)),
            Column::Int32(a) => encoder.encode_field(&a.value(row)),
            Column::Int64(a) => encoder.encode_field(&a.value(row)),
            Column::Float32(a) if format == FieldFormat::Text => {
                float(encoder, float_text_f32(a.value(row)), &Type::FLOAT4)
            }
            Column::Float32(a) => encoder.encode_field(&a.value(row)),
            Column::Float64(a) if format == FieldFormat::Text => {
                float(encoder, float_text(a.value(row)), &Type::FLOAT8)
            }
            Column::Float64(a) => encoder.encode_field(&a.value(row)),
            Column::Time(a) => {
                let micros = a.value(row);
                let at = if micros >= 0 {
                    UNIX_EPOCH + std::time::Duration::from_micros(micros as u64)
                } else {
                    UNIX_EPOCH - std::time::Duration::from_micros(micros.unsigned_abs())
                };
                encoder.encode_field(&at)
            }
            Column::Text(a) => encoder.encode_field(&a.value(row)),
        }
    }
}

/// The longest query string taken: a job file is a few kilobytes, a rule at most 256 KiB.
pub const MAX_QUERY_BYTES: usize = 1 << 20;

/// The statements of a query string.
fn statements(sql: &str) -> Result<Vec<Statement>, SqlError> {
    if sql.len() > MAX_QUERY_BYTES {
        return Err(SqlError::new(
            "54000",
            format!(
                "the query string is {} bytes; ferry takes at most {MAX_QUERY_BYTES}",
                sql.len()
            ),
        ));
    }
    grammar::parse(sql).map_err(syntax)
}

/// The statement of a query string that holds exactly one (extended protocol).
fn one_statement(sql: &str) -> Result<Statement, SqlError> {
    let mut statements = statements(sql)?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Ok(Statement::Chatter(grammar::Chatter::Accepted("EMPTY"))),
        _ => Err(SqlError::new(
            "42601",
            "cannot insert multiple commands into a prepared statement",
        )),
    }
}

/// The schema of the rows `statement` answers with, if any, and its parameters' types.
async fn describe(
    service: &Arc<Service>,
    statement: &Statement,
) -> Result<(Option<SchemaRef>, Vec<Option<DataType>>), SqlError> {
    match statement {
        Statement::Query { sql, .. } => {
            let (schema, params) = execute::describe(service, sql).await?;
            Ok((Some(schema), params))
        }
        Statement::ShowJobs | Statement::ShowJob { .. } => {
            let sql = if matches!(statement, Statement::ShowJobs) {
                execute::SHOW_JOBS
            } else {
                "SELECT * FROM ferry.jobs"
            };
            Ok((Some(execute::describe(service, sql).await?.0), Vec::new()))
        }
        Statement::Act {
            action: Action::Precheck,
            ..
        } => Ok((Some(tables::precheck_schema()), Vec::new())),
        Statement::Chatter(grammar::Chatter::Show(name)) => Ok((
            Some(Arc::new(Schema::new(vec![Field::new(
                name.replace(' ', "_"),
                DataType::Utf8,
                false,
            )]))),
            Vec::new(),
        )),
        _ => Ok((None, Vec::new())),
    }
}

/// The PostgreSQL type of a parameter DataFusion inferred.
fn param_type(data_type: Option<&DataType>) -> Type {
    match data_type {
        Some(t) => wire_type(t).1,
        None => Type::TEXT,
    }
}

/// Bound parameter `i` of `portal` as a value of `want` (DataFusion's inferred type).
fn param_value(
    portal: &Portal<Prepared>,
    i: usize,
    given: Option<&Type>,
    want: Option<&DataType>,
) -> PgWireResult<ScalarValue> {
    let pg = given.cloned().unwrap_or_else(|| param_type(want));
    let value = match pg {
        Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(i, &pg)?),
        Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(i, &pg)?),
        Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(i, &pg)?),
        Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(i, &pg)?),
        Type::FLOAT4 => ScalarValue::Float32(portal.parameter::<f32>(i, &pg)?),
        Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(i, &pg)?),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let at = portal.parameter::<std::time::SystemTime>(i, &pg)?;
            let micros = at.map(|at| match at.duration_since(UNIX_EPOCH) {
                Ok(after) => after.as_micros() as i64,
                Err(before) => -(before.duration().as_micros() as i64),
            });
            let zone = (pg == Type::TIMESTAMPTZ).then(|| "+00:00".into());
            ScalarValue::TimestampMicrosecond(micros, zone)
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            ScalarValue::Utf8(portal.parameter::<String>(i, &Type::TEXT)?)
        }
        _ if portal.parameter_format.is_text(i) => {
            ScalarValue::Utf8(portal.parameter::<String>(i, &Type::TEXT)?)
        }
        other => {
            return Err(SqlError::new(
                "0A000",
                format!(
                    "parameter ${} is of type {other} in binary: send it as text, or as text, bool, an integer, a float or a timestamp",
                    i + 1
                ),
            )
            .wire())
        }
    };
    match want {
        Some(want) if value.data_type() != *want => value.cast_to(want).map_err(|e| {
            SqlError::new(
                "22023",
                format!("parameter ${} cannot be read as {want}: {e}", i + 1),
            )
            .wire()
        }),
        _ => Ok(value),
    }
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = match statements(query) {
            Ok(statements) => statements,
            Err(error) => return Ok(vec![Response::Error(Box::new(error.info()))]),
        };
        let mut responses = Vec::new();
        for statement in &statements {
            match execute::execute(&self.service, statement, &[]).await {
                Ok(answer) => {
                    notices(client, &answer).await?;
                    match response(answer, &Format::UnifiedText, None) {
                        Ok(reply) => responses.push(reply),
                        Err(error) => {
                            responses.push(Response::Error(Box::new(ErrorInfo::from(error))));
                            break;
                        }
                    }
                }
                Err(error) => {
                    // As PostgreSQL does, an error ends the query string's statements.
                    responses.push(Response::Error(Box::new(error.info())));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

/// Parses and describes statements for the extended protocol.
pub struct Parser {
    service: Arc<Service>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let statement = one_statement(sql).map_err(|e| e.wire())?;
        let (schema, params) = describe(&self.service, &statement)
            .await
            .map_err(|e| e.wire())?;
        Ok(Some(Prepared {
            statement,
            schema,
            params,
        }))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(statement
            .params
            .iter()
            .map(|t| param_type(t.as_ref()))
            .collect())
    }

    fn get_result_schema(
        &self,
        statement: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(match &statement.schema {
            Some(schema) => canonical(schema, format.unwrap_or(&Format::UnifiedText)).0,
            None => Vec::new(),
        })
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::new(Parser {
            service: Arc::clone(&self.service),
        })
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Prepared>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &target.statement;
        let count = prepared.params.len().max(target.parameter_types.len());
        let params = (0..count)
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| param_type(prepared.params.get(i).and_then(Option::as_ref)))
            })
            .collect();
        let fields = match &prepared.schema {
            Some(schema) => canonical(schema, &Format::UnifiedText).0,
            None => return Ok(DescribeStatementResponse::new(params, Vec::new())),
        };
        Ok(DescribeStatementResponse::new(params, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Prepared>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Ok(match &portal.statement.statement.schema {
            Some(schema) => {
                DescribePortalResponse::new(canonical(schema, &portal.result_column_format).0)
            }
            None => DescribePortalResponse::no_data(),
        })
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let given = &portal.statement.parameter_types;
        let params = (0..portal.parameter_len())
            .map(|i| {
                param_value(
                    portal,
                    i,
                    given.get(i).and_then(Option::as_ref),
                    prepared.params.get(i).and_then(Option::as_ref),
                )
            })
            .collect::<PgWireResult<Vec<_>>>()?;
        if matches!(
            prepared.statement,
            Statement::Chatter(grammar::Chatter::Accepted("EMPTY"))
        ) {
            return Ok(Response::EmptyQuery);
        }
        match execute::execute(&self.service, &prepared.statement, &params).await {
            Ok(answer) => {
                notices(client, &answer).await?;
                // Rows as Describe announced them (a parameter typed by the client can
                // make DataFusion's answer another type).
                response(
                    answer,
                    &portal.result_column_format,
                    prepared.schema.as_ref(),
                )
            }
            Err(error) => Ok(Response::Error(Box::new(error.info()))),
        }
    }
}

/// Where the SQL control plane listens, for the log line a supervisor waits for.
pub fn announce(address: SocketAddr) {
    eprintln!("ferry serve: sql on postgres://{address}/ferry");
}
