//! ferry's statements over SQL: `CREATE JOB`, `START|PAUSE|RESUME|STOP|CUTOVER|PRECHECK JOB`,
//! `ALTER JOB … SET (…)`, `SET LIMIT FOR JOB`, `DROP JOB`, `SHOW JOBS`, `SHOW JOB`, and the
//! statements drivers send on their own (`SET`, `BEGIN`, `SHOW server_version`, …).
//!
//! A query string is tokenized once with sqlparser's PostgreSQL tokenizer (so `$$…$$`,
//! quoted identifiers and comments are read as PostgreSQL reads them) and split at top-level
//! semicolons. Each statement's first words decide (as PeerDB's parser does): ferry's own
//! grammar, driver chatter, or anything else, which goes to DataFusion over the `ferry.*`
//! tables as written — its text is cut out of the query by the tokens' spans, never rebuilt.

use ferry_sql::offsets::ByteOffsets;
use ferry_sql::sqlparser::dialect::PostgreSqlDialect;
use ferry_sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace, Word};

use crate::lifecycle::Action;

/// A statement of ferry's control plane.
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    /// `CREATE JOB`.
    CreateJob(CreateJob),
    /// `PRECHECK|START|PAUSE|RESUME|STOP|CUTOVER JOB [IF EXISTS] name [WITH (…)]`.
    Act {
        /// What to do.
        action: Action,
        /// The job.
        name: String,
        /// `IF EXISTS`: an unknown job is a notice, not an error.
        if_exists: bool,
        /// `WITH (…)` (a cutover's `max_lag_seconds`, `timeout`).
        options: Vec<Opt>,
    },
    /// `DROP JOB [IF EXISTS] name [KEEP RESOURCES]`.
    DropJob {
        /// The job.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
        /// `KEEP RESOURCES`: leave the slot, publication and sink records.
        keep_resources: bool,
    },
    /// `ALTER JOB name SET (key = value, …)`.
    AlterJob {
        /// The job.
        name: String,
        /// The keys to set.
        options: Vec<Opt>,
    },
    /// `SET LIMIT FOR JOB name (rows_per_sec = …, mb_per_sec = …)`.
    SetLimit {
        /// The job.
        name: String,
        /// The limits (`DEFAULT`: unlimited).
        options: Vec<Opt>,
    },
    /// `SHOW JOBS`.
    ShowJobs,
    /// `SHOW JOB name`.
    ShowJob {
        /// The job.
        name: String,
    },
    /// A statement drivers send that changes nothing here.
    Chatter(Chatter),
    /// Anything else: a query for DataFusion over the `ferry.*` tables.
    Query {
        /// The statement's text, as written.
        sql: String,
        /// Where it starts in the query string (characters), for error positions.
        offset: usize,
    },
}

/// `CREATE JOB`.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateJob {
    /// The new job's name.
    pub name: String,
    /// `IF NOT EXISTS`: an existing job is a notice, not an error.
    pub if_not_exists: bool,
    /// What the job is made of.
    pub body: CreateBody,
    /// `WITH (…)`.
    pub options: Vec<Opt>,
}

/// What a `CREATE JOB` makes the job from.
#[derive(Clone, Debug, PartialEq)]
pub enum CreateBody {
    /// `FROM 'url' TO 'url' [RULES ($$…$$, …)]`.
    FromTo {
        /// The source URL.
        source: String,
        /// The sink URL.
        sink: String,
        /// The rules' SQL.
        rules: Vec<String>,
    },
    /// `AS $$<job file>$$`.
    File(String),
    /// `LIKE other`: a copy of another job's spec.
    Like(String),
}

/// One `key = value` of a `WITH (…)`, `SET (…)` or limit list.
#[derive(Clone, Debug, PartialEq)]
pub struct Opt {
    /// The key (`parallelism`, `sink.url`).
    pub key: String,
    /// The value.
    pub value: OptValue,
    /// Where the key is in the query string (1-based characters).
    pub position: usize,
}

/// An option's value.
#[derive(Clone, Debug, PartialEq)]
pub enum OptValue {
    /// A string literal, or a bare word.
    Text(String),
    /// A number as written.
    Number(String),
    /// `true` / `false` (also `on` / `off`).
    Bool(bool),
    /// `DEFAULT`.
    Default,
}

/// A statement drivers send on their own.
#[derive(Clone, Debug, PartialEq)]
pub enum Chatter {
    /// `SET …` (not `SET LIMIT`), `RESET …`, `DISCARD …`: accepted, changes nothing. The tag.
    Accepted(&'static str),
    /// `BEGIN`, `START TRANSACTION`.
    Begin,
    /// `COMMIT`, `END`.
    Commit,
    /// `ROLLBACK`, `ABORT`.
    Rollback,
    /// `SHOW name`.
    Show(String),
}

/// A statement that does not parse.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    /// What is wrong and what was expected.
    pub message: String,
    /// Where (1-based characters in the query string).
    pub position: usize,
}

/// One token and where it starts (1-based characters) in the query string.
#[derive(Clone, Debug)]
struct Spanned {
    token: Token,
    start: usize,
    /// Byte offsets of the token in the query string.
    bytes: std::ops::Range<usize>,
}

/// Splits `text` into statements and parses each.
pub fn parse(text: &str) -> Result<Vec<Statement>, SyntaxError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| SyntaxError {
            message: e.message.clone(),
            position: ByteOffsets::new(text).char_index(e.location) + 1,
        })?;
    let offsets = ByteOffsets::new(text);
    let mut spanned = Vec::with_capacity(tokens.len());
    for token in tokens {
        spanned.push(Spanned {
            start: offsets.char_index(token.span.start) + 1,
            bytes: offsets.of(token.span.start)..offsets.of(token.span.end),
            token: token.token,
        });
    }
    let mut statements = Vec::new();
    let mut current: Vec<Spanned> = Vec::new();
    for token in spanned.into_iter().chain(std::iter::once(Spanned {
        token: Token::SemiColon,
        start: text.chars().count() + 1,
        bytes: text.len()..text.len(),
    })) {
        if token.token == Token::SemiColon {
            let all: Vec<Spanned> = std::mem::take(&mut current);
            let words: Vec<Spanned> = all
                .iter()
                .filter(|t| !matches!(t.token, Token::Whitespace(_)))
                .cloned()
                .collect();
            if words.is_empty() {
                continue;
            }
            let first = words.first().map_or(0, |t| t.bytes.start);
            let last = words.last().map_or(0, |t| t.bytes.end);
            statements.push(Parser::new(text, words, token.start).statement(first..last)?);
        } else {
            current.push(token);
        }
    }
    Ok(statements)
}

/// The words that start ferry's own statements, after `CREATE`, `DROP`, … (`JOB`).
const OWN: &[&str] = &[
    "CREATE", "DROP", "ALTER", "START", "PAUSE", "RESUME", "STOP", "CUTOVER", "PRECHECK", "RESYNC",
];

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Spanned>,
    next: usize,
    /// Where the statement ends (its semicolon, or the end of the text).
    end: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, tokens: Vec<Spanned>, end: usize) -> Parser<'a> {
        Parser {
            text,
            tokens,
            next: 0,
            end,
        }
    }

    fn statement(mut self, bytes: std::ops::Range<usize>) -> Result<Statement, SyntaxError> {
        let first = self.word_at(0).unwrap_or_default();
        let second = self.word_at(1).unwrap_or_default();
        let own = (OWN.contains(&first.as_str()) && second == "JOB")
            || (first == "SHOW" && (second == "JOBS" || second == "JOB"))
            || (first == "SET" && second == "LIMIT");
        if own {
            return self.own();
        }
        if let Some(chatter) = self.chatter(&first, &second) {
            return Ok(chatter);
        }
        let offset = self.tokens.first().map_or(1, |t| t.start) - 1;
        Ok(Statement::Query {
            sql: self.text[bytes].to_string(),
            offset,
        })
    }

    /// The `i`th token as an unquoted word, upper-cased.
    fn word_at(&self, i: usize) -> Option<String> {
        match self.tokens.get(i).map(|t| &t.token) {
            Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn chatter(&self, first: &str, second: &str) -> Option<Statement> {
        let chatter = match first {
            "SET" => Chatter::Accepted("SET"),
            "RESET" => Chatter::Accepted("RESET"),
            "DISCARD" => Chatter::Accepted("DISCARD ALL"),
            "BEGIN" => Chatter::Begin,
            "START" if second == "TRANSACTION" => Chatter::Begin,
            "COMMIT" | "END" => Chatter::Commit,
            "ROLLBACK" | "ABORT" => Chatter::Rollback,
            "SHOW" => {
                let name: Vec<String> = self.tokens[1..]
                    .iter()
                    .map(|t| match &t.token {
                        Token::Word(w) => w.value.to_ascii_lowercase(),
                        other => other.to_string(),
                    })
                    .collect();
                Chatter::Show(name.join(" "))
            }
            _ => return None,
        };
        Some(Statement::Chatter(chatter))
    }

    fn own(&mut self) -> Result<Statement, SyntaxError> {
        let first = self.keyword_any(&[
            "CREATE", "DROP", "ALTER", "START", "PAUSE", "RESUME", "STOP", "CUTOVER", "PRECHECK",
            "RESYNC", "SHOW", "SET",
        ])?;
        match first {
            "SHOW" => {
                if self.keyword_if("JOBS") {
                    self.finish()?;
                    return Ok(Statement::ShowJobs);
                }
                self.keyword("JOB")?;
                let name = self.name()?;
                self.finish()?;
                Ok(Statement::ShowJob { name })
            }
            "SET" => {
                self.keyword("LIMIT")?;
                self.keyword("FOR")?;
                self.keyword("JOB")?;
                let name = self.name()?;
                let options = self.options()?;
                self.finish()?;
                Ok(Statement::SetLimit { name, options })
            }
            "CREATE" => {
                self.keyword("JOB")?;
                self.create()
            }
            "DROP" => {
                self.keyword("JOB")?;
                let if_exists = self.if_exists()?;
                let name = self.name()?;
                let keep_resources = if self.keyword_if("KEEP") {
                    self.keyword("RESOURCES")?;
                    true
                } else {
                    false
                };
                self.finish()?;
                Ok(Statement::DropJob {
                    name,
                    if_exists,
                    keep_resources,
                })
            }
            "ALTER" => {
                self.keyword("JOB")?;
                let name = self.name()?;
                self.keyword("SET")?;
                let options = self.options()?;
                self.finish()?;
                Ok(Statement::AlterJob { name, options })
            }
            "RESYNC" => Err(SyntaxError {
                message: "RESYNC JOB is not supported yet: drop the job and create it again, or create a copy with CREATE JOB new LIKE old".into(),
                position: self.tokens[0].start,
            }),
            action => {
                let action = match action {
                    "START" => Action::Start,
                    "PAUSE" => Action::Pause,
                    "RESUME" => Action::Resume,
                    "STOP" => Action::Stop,
                    "CUTOVER" => Action::Cutover,
                    _ => Action::Precheck,
                };
                self.keyword("JOB")?;
                let if_exists = self.if_exists()?;
                let name = self.name()?;
                let options = if self.keyword_if("WITH") {
                    self.options()?
                } else {
                    Vec::new()
                };
                self.finish()?;
                Ok(Statement::Act {
                    action,
                    name,
                    if_exists,
                    options,
                })
            }
        }
    }

    fn create(&mut self) -> Result<Statement, SyntaxError> {
        let if_not_exists = if self.keyword_if("IF") {
            self.keyword("NOT")?;
            self.keyword("EXISTS")?;
            true
        } else {
            false
        };
        let name = self.name()?;
        let body = match self.keyword_any(&["FROM", "AS", "LIKE"])? {
            "FROM" => {
                let source =
                    self.string("the source URL ('postgres://…', 'mysql://…', 'redis://…')")?;
                self.keyword("TO")?;
                let sink = self.string("the sink URL")?;
                let mut rules = Vec::new();
                if self.keyword_if("RULES") {
                    self.expect(Token::LParen, "( after RULES")?;
                    loop {
                        rules.push(
                            self.string("a rule ($$INSERT INTO … SELECT … FROM … WHERE …$$)")?,
                        );
                        if !self.punct_if(Token::Comma) {
                            break;
                        }
                    }
                    self.expect(Token::RParen, ") or , in the RULES list")?;
                }
                CreateBody::FromTo {
                    source,
                    sink,
                    rules,
                }
            }
            "AS" => CreateBody::File(self.string("the job file, as $$…$$")?),
            _ => CreateBody::Like(self.name()?),
        };
        let options = if self.keyword_if("WITH") {
            self.options()?
        } else {
            Vec::new()
        };
        self.finish()?;
        Ok(Statement::CreateJob(CreateJob {
            name,
            if_not_exists,
            body,
            options,
        }))
    }

    fn if_exists(&mut self) -> Result<bool, SyntaxError> {
        if self.keyword_if("IF") {
            self.keyword("EXISTS")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// `( key = value [, …] )`.
    fn options(&mut self) -> Result<Vec<Opt>, SyntaxError> {
        self.expect(Token::LParen, "( and a list of key = value")?;
        let mut options = Vec::new();
        if self.punct_if(Token::RParen) {
            return Ok(options);
        }
        loop {
            let position = self.position();
            let key = self.key()?;
            self.expect(Token::Eq, &format!("= after {key}"))?;
            let value = self.value()?;
            options.push(Opt {
                key,
                value,
                position,
            });
            if !self.punct_if(Token::Comma) {
                break;
            }
        }
        self.expect(Token::RParen, ") or , in the option list")?;
        Ok(options)
    }

    /// `word`, `word.word…` or `"dotted.key"`.
    fn key(&mut self) -> Result<String, SyntaxError> {
        let mut parts = Vec::new();
        loop {
            match self.take() {
                Some(Token::Word(Word {
                    value, quote_style, ..
                })) => parts.push(if quote_style.is_some() {
                    value
                } else {
                    value.to_ascii_lowercase()
                }),
                other => return Err(self.unexpected(other, "an option name")),
            }
            if !self.punct_if(Token::Period) {
                break;
            }
        }
        Ok(parts.join("."))
    }

    fn value(&mut self) -> Result<OptValue, SyntaxError> {
        let negative = self.punct_if(Token::Minus);
        match self.take() {
            Some(Token::Number(n, _)) => {
                Ok(OptValue::Number(if negative { format!("-{n}") } else { n }))
            }
            Some(Token::SingleQuotedString(s))
            | Some(Token::DollarQuotedString(ferry_sql::sqlparser::ast::DollarQuotedString {
                value: s,
                ..
            })) if !negative => Ok(OptValue::Text(s)),
            Some(Token::Word(w)) if !negative && w.quote_style.is_none() => {
                Ok(match w.value.to_ascii_uppercase().as_str() {
                    "TRUE" | "ON" => OptValue::Bool(true),
                    "FALSE" | "OFF" => OptValue::Bool(false),
                    "DEFAULT" => OptValue::Default,
                    _ => OptValue::Text(w.value),
                })
            }
            other => Err(self.unexpected(
                other,
                "a value (a number, a 'string', true, false or DEFAULT)",
            )),
        }
    }

    /// A job name: an identifier, folded to lower case unless quoted.
    fn name(&mut self) -> Result<String, SyntaxError> {
        match self.take() {
            Some(Token::Word(Word {
                value, quote_style, ..
            })) => Ok(if quote_style.is_some() {
                value
            } else {
                value.to_ascii_lowercase()
            }),
            other => Err(self.unexpected(other, "a job name")),
        }
    }

    /// A string literal: `'…'` or `$$…$$` (`E'…'` too).
    fn string(&mut self, what: &str) -> Result<String, SyntaxError> {
        match self.take() {
            Some(Token::SingleQuotedString(s)) | Some(Token::EscapedStringLiteral(s)) => Ok(s),
            Some(Token::DollarQuotedString(d)) => Ok(d.value),
            other => Err(self.unexpected(other, what)),
        }
    }

    fn keyword(&mut self, word: &str) -> Result<(), SyntaxError> {
        if self.keyword_if(word) {
            Ok(())
        } else {
            Err(self.unexpected_next(word))
        }
    }

    fn keyword_any(&mut self, words: &[&'static str]) -> Result<&'static str, SyntaxError> {
        for word in words {
            if self.keyword_if(word) {
                return Ok(word);
            }
        }
        Err(self.unexpected_next(&words.join(" or ")))
    }

    fn keyword_if(&mut self, word: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w))
                if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word) =>
            {
                self.next += 1;
                true
            }
            _ => false,
        }
    }

    fn punct_if(&mut self, token: Token) -> bool {
        if self.peek() == Some(&token) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: Token, what: &str) -> Result<(), SyntaxError> {
        if self.punct_if(token) {
            Ok(())
        } else {
            Err(self.unexpected_next(what))
        }
    }

    fn finish(&mut self) -> Result<(), SyntaxError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.unexpected_next("the end of the statement")),
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|t| &t.token)
    }

    fn take(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).map(|t| t.token.clone());
        if token.is_some() {
            self.next += 1;
        }
        token
    }

    /// Where the next token starts (the statement's end when none is left).
    fn position(&self) -> usize {
        self.tokens.get(self.next).map_or(self.end, |t| t.start)
    }

    /// An error at `found`, the token just taken (the statement's end when there was none).
    fn unexpected(&self, found: Option<Token>, expected: &str) -> SyntaxError {
        let at = match found {
            Some(_) => self
                .tokens
                .get(self.next.saturating_sub(1))
                .map_or(self.end, |t| t.start),
            None => self.end,
        };
        self.error_at(found, expected, at)
    }

    /// An error at the next token, only looked at.
    fn unexpected_next(&self, expected: &str) -> SyntaxError {
        self.error_at(self.peek().cloned(), expected, self.position())
    }

    fn error_at(&self, found: Option<Token>, expected: &str, at: usize) -> SyntaxError {
        let found = match found {
            None => "the end of the statement".to_string(),
            Some(Token::Whitespace(Whitespace::Space)) => "a space".to_string(),
            Some(token) => format!("\"{token}\""),
        };
        SyntaxError {
            message: format!("syntax error at {found}: expected {expected}"),
            position: at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Statement {
        let mut all = parse(text).expect("parses");
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    #[test]
    fn create_from_to_with_rules_and_options() {
        let statement = one(
            "CREATE JOB IF NOT EXISTS J1 FROM 'postgres://a@h/db' TO 'mysql://b@h' \
             RULES ($$INSERT INTO s.t SELECT id FROM p.t WHERE v > 'x;y'$$, 'SELECT * FROM p.u') \
             WITH (types = 'schema,full', parallelism = 4, \"sink.existing_rows\" = 'truncate', start = false)",
        );
        let Statement::CreateJob(create) = statement else {
            panic!("{statement:?}")
        };
        assert_eq!(create.name, "j1");
        assert!(create.if_not_exists);
        assert_eq!(
            create.body,
            CreateBody::FromTo {
                source: "postgres://a@h/db".into(),
                sink: "mysql://b@h".into(),
                rules: vec![
                    "INSERT INTO s.t SELECT id FROM p.t WHERE v > 'x;y'".into(),
                    "SELECT * FROM p.u".into()
                ],
            }
        );
        let keys: Vec<&str> = create.options.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            ["types", "parallelism", "sink.existing_rows", "start"]
        );
        assert_eq!(create.options[1].value, OptValue::Number("4".into()));
        assert_eq!(create.options[3].value, OptValue::Bool(false));
    }

    #[test]
    fn statements_split_at_top_level_semicolons_only() {
        let all =
            parse("CREATE JOB a AS $$name = 'a'; x$$; PAUSE JOB a; SELECT ';' FROM ferry.jobs;;")
                .unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(
            all[0],
            Statement::CreateJob(CreateJob {
                name: "a".into(),
                if_not_exists: false,
                body: CreateBody::File("name = 'a'; x".into()),
                options: vec![],
            })
        );
        assert_eq!(
            all[1],
            Statement::Act {
                action: Action::Pause,
                name: "a".into(),
                if_exists: false,
                options: vec![]
            }
        );
        assert_eq!(
            all[2],
            Statement::Query {
                sql: "SELECT ';' FROM ferry.jobs".into(),
                offset: 48
            }
        );
    }

    #[test]
    fn syntax_errors_say_where_and_what_was_expected() {
        let error = parse("PAUSE JOB").unwrap_err();
        assert_eq!(error.position, 10);
        assert!(
            error.message.contains("expected a job name"),
            "{}",
            error.message
        );
        let error = parse("CREATE JOB j FROM 'x' INTO 'y'").unwrap_err();
        assert_eq!(error.position, 23, "{error:?}");
        assert!(error.message.contains("\"INTO\""), "{}", error.message);
        assert!(error.message.contains("expected TO"), "{}", error.message);
        let error = parse("SET LIMIT FOR JOB j (rows_per_sec 5)").unwrap_err();
        assert_eq!(error.position, 35, "{error:?}");
        let error = parse("DROP JOB j CASCADE").unwrap_err();
        assert_eq!(error.position, 12, "{error:?}");
    }

    #[test]
    fn chatter_and_queries_are_told_apart() {
        assert_eq!(
            one("set extra_float_digits = 3"),
            Statement::Chatter(Chatter::Accepted("SET"))
        );
        assert_eq!(one("BEGIN"), Statement::Chatter(Chatter::Begin));
        assert_eq!(one("start transaction"), Statement::Chatter(Chatter::Begin));
        assert_eq!(
            one("SHOW server_version"),
            Statement::Chatter(Chatter::Show("server_version".into()))
        );
        assert_eq!(
            one("SHOW TRANSACTION ISOLATION LEVEL"),
            Statement::Chatter(Chatter::Show("transaction isolation level".into()))
        );
        assert_eq!(one("show jobs"), Statement::ShowJobs);
        assert_eq!(
            one("SHOW JOB \"Odd\""),
            Statement::ShowJob { name: "Odd".into() }
        );
        assert!(matches!(
            one("DROP TABLE ferry.jobs"),
            Statement::Query { .. }
        ));
        assert!(matches!(
            one("SET LIMIT FOR JOB j (rows_per_sec = DEFAULT, mb_per_sec = 5.5)"),
            Statement::SetLimit { options, .. } if options[0].value == OptValue::Default
                && options[1].value == OptValue::Number("5.5".into())
        ));
    }
}
