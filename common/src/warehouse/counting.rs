//! Statement accounting: a [`Warehouse`] that passes every call to another and records what
//! reached it, by kind and table, for tests ("no UPDATE, MERGE or DELETE reaches a central table
//! during a run") and the benchmark (statements per run, per tick).
//!
//! SQL is classified by its leading keyword, and its tables are read from the references that
//! follow FROM, JOIN, INTO, UPDATE, MERGE, USING, TABLE and VIEW, conservatively: only qualified
//! references (`dataset.table`, the form [`Warehouse::table_ref`] renders) count as tables, and a
//! write whose target cannot be read is recorded with no table, never with a guessed one. A text
//! with several statements is recorded as one entry per statement. Calls that name a dataset and
//! table (`insert_rows`, `stage`, DDL methods) are recorded with those names.
//!
//! Trait calls are what is recorded, not the backend's own requests under them: on BigQuery a
//! `StageCommit` is one MERGE into the table plus one DELETE on its staging table, appends are
//! buffered into INSERTs of about 2 MB, and `stage` reads table metadata; on DuckDB a `Stage`
//! deletes the slice inside its transaction and `StageCommit` commits it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    DatasetOptions, Field, Params, Record, RecordBatches, Row, Staging, TableSchema, Warehouse, WarehouseResult,
};

/// What a statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatementKind {
    /// A query (SELECT, WITH … SELECT, VALUES), through `query` or `query_batches`.
    Select,
    /// An INSERT statement in SQL.
    Insert,
    Update,
    Merge,
    /// DELETE or TRUNCATE.
    Delete,
    /// CREATE, DROP, ALTER in SQL, and the trait's dataset, table, column and view calls.
    Ddl,
    /// BEGIN, COMMIT, ROLLBACK.
    Transaction,
    /// `insert_rows`: a batch of rows into a table (one INSERT job on BigQuery, plain inserts on
    /// DuckDB).
    InsertRows,
    /// `append_rows`: rows appended to an insert-only table (a streaming insert on BigQuery: no
    /// DML statement).
    AppendRows,
    /// `replace_slice`: the slice's rows deleted and new ones inserted, atomically.
    ReplaceSlice,
    /// `stage`: a staged replace begins.
    Stage,
    /// `Staging::append`: a batch of rows staged (loaded out of readers' sight).
    StageAppend,
    /// `Staging::commit`: the slice replaced by the staged rows.
    StageCommit,
    /// `Staging::discard`.
    StageDiscard,
    /// Reads of the catalog: `ping`, `dataset_exists`, `list_tables`, `table_columns`.
    Metadata,
    /// SQL whose kind could not be read.
    Other,
}

impl StatementKind {
    /// Whether the statement may change or remove rows already in its table (UPDATE, MERGE,
    /// DELETE, a slice replace, a staged commit): the kinds BigQuery runs two at a time per
    /// table (DESIGN §12). Inserts and DDL are not.
    pub fn mutates_rows(self) -> bool {
        matches!(
            self,
            StatementKind::Update
                | StatementKind::Merge
                | StatementKind::Delete
                | StatementKind::ReplaceSlice
                | StatementKind::StageCommit
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Select => "SELECT",
            StatementKind::Insert => "INSERT",
            StatementKind::Update => "UPDATE",
            StatementKind::Merge => "MERGE",
            StatementKind::Delete => "DELETE",
            StatementKind::Ddl => "DDL",
            StatementKind::Transaction => "TRANSACTION",
            StatementKind::InsertRows => "insert_rows",
            StatementKind::AppendRows => "append_rows",
            StatementKind::ReplaceSlice => "replace_slice",
            StatementKind::Stage => "stage",
            StatementKind::StageAppend => "stage_append",
            StatementKind::StageCommit => "stage_commit",
            StatementKind::StageDiscard => "stage_discard",
            StatementKind::Metadata => "metadata",
            StatementKind::Other => "other",
        }
    }
}

impl fmt::Display for StatementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One statement that reached the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub kind: StatementKind,
    /// Tables as `dataset.table`: for writes and DDL the written table first, then any read;
    /// for queries every table read. Empty when none could be read (or the call names none).
    pub tables: Vec<String>,
}

impl Statement {
    /// Whether `dataset.table` is one of the statement's tables.
    pub fn touches(&self, dataset: &str, table: &str) -> bool {
        self.tables.iter().any(|t| t.split_once('.') == Some((dataset, table)))
    }

    /// Whether the statement touches a table of `dataset`.
    pub fn touches_dataset(&self, dataset: &str) -> bool {
        self.tables.iter().any(|t| t.split_once('.').is_some_and(|(d, _)| d == dataset))
    }
}

/// Statement counts by (kind, table); a statement with several tables counts once for each, one
/// with none under the table `""`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary(pub BTreeMap<(StatementKind, String), u64>);

impl Summary {
    pub fn of(statements: &[Statement]) -> Summary {
        let mut counts = BTreeMap::new();
        for s in statements {
            if s.tables.is_empty() {
                *counts.entry((s.kind, String::new())).or_insert(0) += 1;
            }
            for t in &s.tables {
                *counts.entry((s.kind, t.clone())).or_insert(0) += 1;
            }
        }
        Summary(counts)
    }

    /// The count for one kind and table (`dataset.table`, or `""`).
    pub fn count(&self, kind: StatementKind, table: &str) -> u64 {
        self.0.get(&(kind, table.to_string())).copied().unwrap_or(0)
    }

    /// The count for one kind over every table.
    pub fn count_kind(&self, kind: StatementKind) -> u64 {
        self.0.iter().filter(|((k, _), _)| *k == kind).map(|(_, n)| n).sum()
    }
}

/// One line per (kind, table): `kind<TAB>table<TAB>count`, sorted, for logs and the benchmark.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for ((kind, table), n) in &self.0 {
            writeln!(f, "{kind}\t{}\t{n}", if table.is_empty() { "-" } else { table })?;
        }
        Ok(())
    }
}

/// The statements recorded so far, shared by a [`CountingWarehouse`] and its stagings.
#[derive(Debug, Clone, Default)]
pub struct StatementLog(Arc<Mutex<Vec<Statement>>>);

impl StatementLog {
    pub fn new() -> StatementLog {
        StatementLog::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Statement>> {
        // A panic while pushing cannot leave the list half-written: keep counting.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, kind: StatementKind, tables: Vec<String>) {
        self.lock().push(Statement { kind, tables });
    }

    fn push_sql(&self, sql: &str, default: StatementKind) {
        let mut log = self.lock();
        for (kind, tables) in classify_sql(sql, default) {
            log.push(Statement { kind, tables });
        }
    }

    /// Every statement recorded since the start or the last reset, in order.
    pub fn snapshot(&self) -> Vec<Statement> {
        self.lock().clone()
    }

    /// Forgets what was recorded.
    pub fn reset(&self) {
        self.lock().clear();
    }

    /// The recorded statements, forgetting them (a snapshot and a reset at once).
    pub fn take(&self) -> Vec<Statement> {
        std::mem::take(&mut *self.lock())
    }

    pub fn summary(&self) -> Summary {
        Summary::of(&self.lock())
    }
}

/// A warehouse that records every call reaching `inner` (see the module doc), changing nothing.
pub struct CountingWarehouse {
    inner: Arc<dyn Warehouse>,
    log: StatementLog,
}

impl CountingWarehouse {
    pub fn new(inner: Arc<dyn Warehouse>) -> CountingWarehouse {
        CountingWarehouse::with_log(inner, StatementLog::new())
    }

    /// Records into `log`, a handle kept by the caller: for `AppState::build_with_warehouse`,
    /// whose wrapper closure cannot hand anything back.
    pub fn with_log(inner: Arc<dyn Warehouse>, log: StatementLog) -> CountingWarehouse {
        CountingWarehouse { inner, log }
    }

    /// Wraps `inner` and returns the wrapper as a warehouse with a handle on its log, which stays
    /// usable wherever the warehouse goes.
    pub fn wrap(inner: Arc<dyn Warehouse>) -> (Arc<dyn Warehouse>, StatementLog) {
        let log = StatementLog::new();
        (Arc::new(CountingWarehouse::with_log(inner, log.clone())), log)
    }

    /// The log this warehouse records into.
    pub fn log(&self) -> StatementLog {
        self.log.clone()
    }

    pub fn snapshot(&self) -> Vec<Statement> {
        self.log.snapshot()
    }

    pub fn reset(&self) {
        self.log.reset()
    }

    pub fn summary(&self) -> Summary {
        self.log.summary()
    }

    fn record(&self, kind: StatementKind, dataset: &str, table: Option<&str>) {
        let tables = match table {
            Some(t) => vec![format!("{dataset}.{t}")],
            None => Vec::new(),
        };
        self.log.push(kind, tables);
    }
}

#[async_trait]
impl Warehouse for CountingWarehouse {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    fn table_ref(&self, dataset: &str, table: &str) -> WarehouseResult<String> {
        self.inner.table_ref(dataset, table)
    }

    async fn ping(&self) -> WarehouseResult<()> {
        self.log.push(StatementKind::Metadata, Vec::new());
        self.inner.ping().await
    }

    async fn dataset_exists(&self, dataset: &str) -> WarehouseResult<bool> {
        self.record(StatementKind::Metadata, dataset, None);
        self.inner.dataset_exists(dataset).await
    }

    async fn create_dataset(&self, dataset: &str, options: &DatasetOptions) -> WarehouseResult<bool> {
        self.record(StatementKind::Ddl, dataset, None);
        self.inner.create_dataset(dataset, options).await
    }

    async fn drop_dataset(&self, dataset: &str) -> WarehouseResult<()> {
        self.record(StatementKind::Ddl, dataset, None);
        self.inner.drop_dataset(dataset).await
    }

    async fn list_tables(&self, dataset: &str) -> WarehouseResult<Vec<String>> {
        self.record(StatementKind::Metadata, dataset, None);
        self.inner.list_tables(dataset).await
    }

    async fn list_all_tables(&self, dataset: &str) -> WarehouseResult<Vec<String>> {
        self.record(StatementKind::Metadata, dataset, None);
        self.inner.list_all_tables(dataset).await
    }

    async fn create_table(&self, dataset: &str, schema: &TableSchema) -> WarehouseResult<bool> {
        self.record(StatementKind::Ddl, dataset, Some(&schema.name));
        self.inner.create_table(dataset, schema).await
    }

    async fn drop_table(&self, dataset: &str, table: &str) -> WarehouseResult<()> {
        self.record(StatementKind::Ddl, dataset, Some(table));
        self.inner.drop_table(dataset, table).await
    }

    async fn table_columns(&self, dataset: &str, table: &str) -> WarehouseResult<Vec<String>> {
        self.record(StatementKind::Metadata, dataset, Some(table));
        self.inner.table_columns(dataset, table).await
    }

    async fn add_column(&self, dataset: &str, table: &str, field: &Field) -> WarehouseResult<()> {
        self.record(StatementKind::Ddl, dataset, Some(table));
        self.inner.add_column(dataset, table, field).await
    }

    async fn drop_column(&self, dataset: &str, table: &str, column: &str) -> WarehouseResult<()> {
        self.record(StatementKind::Ddl, dataset, Some(table));
        self.inner.drop_column(dataset, table, column).await
    }

    async fn create_view(&self, dataset: &str, view: &str, select_sql: &str) -> WarehouseResult<()> {
        self.record(StatementKind::Ddl, dataset, Some(view));
        self.inner.create_view(dataset, view, select_sql).await
    }

    async fn query(&self, sql: &str, params: &Params) -> WarehouseResult<Vec<Row>> {
        self.log.push_sql(sql, StatementKind::Select);
        self.inner.query(sql, params).await
    }

    async fn execute(&self, sql: &str, params: &Params) -> WarehouseResult<u64> {
        self.log.push_sql(sql, StatementKind::Other);
        self.inner.execute(sql, params).await
    }

    async fn insert_rows(&self, dataset: &str, schema: &TableSchema, rows: &[Row]) -> WarehouseResult<u64> {
        self.record(StatementKind::InsertRows, dataset, Some(&schema.name));
        self.inner.insert_rows(dataset, schema, rows).await
    }

    async fn append_rows(
        &self,
        dataset: &str,
        schema: &TableSchema,
        id_column: &str,
        rows: &[Row],
    ) -> WarehouseResult<u64> {
        self.record(StatementKind::AppendRows, dataset, Some(&schema.name));
        self.inner.append_rows(dataset, schema, id_column, rows).await
    }

    async fn replace_slice(
        &self,
        dataset: &str,
        schema: &TableSchema,
        predicate: &str,
        params: &Params,
        rows: &[Row],
    ) -> WarehouseResult<(u64, u64)> {
        self.record(StatementKind::ReplaceSlice, dataset, Some(&schema.name));
        self.inner.replace_slice(dataset, schema, predicate, params, rows).await
    }

    async fn replace_slice_from_select(
        &self,
        dataset: &str,
        schema: &TableSchema,
        predicate: &str,
        params: &Params,
        select_sql: &str,
    ) -> WarehouseResult<(u64, u64)> {
        self.record(StatementKind::ReplaceSlice, dataset, Some(&schema.name));
        self.inner.replace_slice_from_select(dataset, schema, predicate, params, select_sql).await
    }

    async fn query_batches(&self, sql: &str, params: &Params, batch_rows: usize) -> WarehouseResult<RecordBatches> {
        self.log.push_sql(sql, StatementKind::Select);
        self.inner.query_batches(sql, params, batch_rows).await
    }

    async fn stage(
        &self,
        dataset: &str,
        schema: &TableSchema,
        predicate: &str,
        params: &Params,
    ) -> WarehouseResult<Box<dyn Staging>> {
        let table = format!("{dataset}.{}", schema.name);
        self.log.push(StatementKind::Stage, vec![table.clone()]);
        let inner = self.inner.stage(dataset, schema, predicate, params).await?;
        Ok(Box::new(CountingStaging { inner, table, log: self.log.clone() }))
    }
}

/// A staging whose appends, commit and discard are recorded in its warehouse's log.
struct CountingStaging {
    inner: Box<dyn Staging>,
    /// `dataset.table` being replaced.
    table: String,
    log: StatementLog,
}

#[async_trait]
impl Staging for CountingStaging {
    async fn append(&mut self, records: Vec<Record>) -> WarehouseResult<u64> {
        self.log.push(StatementKind::StageAppend, vec![self.table.clone()]);
        self.inner.append(records).await
    }

    async fn append_select(&mut self, select_sql: &str, params: &Params) -> WarehouseResult<u64> {
        self.log.push(StatementKind::StageAppend, vec![self.table.clone()]);
        self.inner.append_select(select_sql, params).await
    }

    fn staged(&self) -> u64 {
        self.inner.staged()
    }

    async fn commit(self: Box<Self>) -> WarehouseResult<(u64, u64)> {
        self.log.push(StatementKind::StageCommit, vec![self.table.clone()]);
        self.inner.commit().await
    }

    async fn discard(self: Box<Self>) -> WarehouseResult<()> {
        self.log.push(StatementKind::StageDiscard, vec![self.table.clone()]);
        self.inner.discard().await
    }
}

// ---------------------------------------------------------------------------------------------
// SQL classification
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// An unquoted word: upper-cased (to match keywords), and as written.
    Word(String, String),
    /// A quoted identifier's text (backticks or double quotes), as written.
    Quoted(String),
    Dot,
    Comma,
    Open,
    Close,
    Semicolon,
    /// Anything else (operators, numbers' punctuation, parameters, string literals).
    Other,
}

/// Tokens of `sql`, skipping string literals and comments.
fn tokenize(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                tokens.push(Token::Other);
            }
            '`' | '"' => {
                let start = i + 1;
                i = start;
                while i < chars.len() && chars[i] != c {
                    i += 1;
                }
                tokens.push(Token::Quoted(chars[start..i.min(chars.len())].iter().collect()));
                i += 1;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
            }
            '@' => {
                // A parameter: its name is not a word of the statement.
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                tokens.push(Token::Other);
            }
            '.' => {
                tokens.push(Token::Dot);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            ';' => {
                tokens.push(Token::Semicolon);
                i += 1;
            }
            c if c.is_alphanumeric() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                tokens.push(Token::Word(text.to_ascii_uppercase(), text));
            }
            c if c.is_whitespace() => i += 1,
            _ => {
                tokens.push(Token::Other);
                i += 1;
            }
        }
    }
    tokens
}

/// The statements of `sql` as (kind, tables), one per statement; `default` is the kind of a
/// statement whose leading keyword says nothing (a query through `query` is a SELECT).
pub(crate) fn classify_sql(sql: &str, default: StatementKind) -> Vec<(StatementKind, Vec<String>)> {
    let tokens = tokenize(sql);
    tokens
        .split(|t| *t == Token::Semicolon)
        .filter(|statement| !statement.is_empty())
        .map(|statement| classify_statement(statement, default))
        .collect()
}

fn word(token: Option<&Token>) -> Option<&str> {
    match token {
        Some(Token::Word(upper, _)) => Some(upper),
        _ => None,
    }
}

fn classify_statement(tokens: &[Token], default: StatementKind) -> (StatementKind, Vec<String>) {
    let first = tokens.iter().position(|t| *t != Token::Open).and_then(|i| word(tokens.get(i)));
    let kind = match first {
        Some("SELECT" | "VALUES" | "FROM") => StatementKind::Select,
        // WITH … then SELECT, or (DuckDB) a DML statement: the first of those at the top level.
        Some("WITH") => top_level_kind(tokens).unwrap_or(StatementKind::Select),
        Some(w) => keyword_kind(w).unwrap_or(default),
        None => default,
    };
    let mut tables = Vec::new();
    // Writes name their target right after their keyword(s); it goes first.
    let target_at = match kind {
        StatementKind::Insert | StatementKind::Merge | StatementKind::Delete => {
            let start =
                tokens.iter().position(|t| matches!(word(Some(t)), Some("INSERT" | "MERGE" | "DELETE" | "TRUNCATE")));
            start.map(|i| {
                let mut j = i + 1;
                while matches!(word(tokens.get(j)), Some("INTO" | "FROM" | "TABLE")) {
                    j += 1;
                }
                j
            })
        }
        StatementKind::Update => tokens.iter().position(|t| word(Some(t)) == Some("UPDATE")).map(|i| i + 1),
        StatementKind::Ddl => {
            tokens.iter().position(|t| matches!(word(Some(t)), Some("TABLE" | "VIEW" | "SCHEMA"))).map(|i| {
                let mut j = i + 1;
                while matches!(word(tokens.get(j)), Some("IF" | "NOT" | "EXISTS")) {
                    j += 1;
                }
                j
            })
        }
        _ => None,
    };
    if let Some((table, _)) = target_at.and_then(|at| reference_at(tokens, at, true)) {
        tables.push(table);
    }
    for table in read_tables(tokens) {
        if !tables.contains(&table) {
            tables.push(table);
        }
    }
    (kind, tables)
}

fn keyword_kind(word: &str) -> Option<StatementKind> {
    Some(match word {
        "SELECT" => StatementKind::Select,
        "INSERT" => StatementKind::Insert,
        "UPDATE" => StatementKind::Update,
        "MERGE" => StatementKind::Merge,
        "DELETE" | "TRUNCATE" => StatementKind::Delete,
        "CREATE" | "DROP" | "ALTER" => StatementKind::Ddl,
        "BEGIN" | "COMMIT" | "ROLLBACK" | "START" | "END" => StatementKind::Transaction,
        _ => return None,
    })
}

/// The kind of the first statement keyword outside parentheses, after a WITH clause.
fn top_level_kind(tokens: &[Token]) -> Option<StatementKind> {
    let mut depth = 0usize;
    for t in tokens {
        match t {
            Token::Open => depth += 1,
            Token::Close => depth = depth.saturating_sub(1),
            Token::Word(w, _) if depth == 0 => {
                if let Some(
                    kind @ (StatementKind::Select
                    | StatementKind::Insert
                    | StatementKind::Update
                    | StatementKind::Merge
                    | StatementKind::Delete),
                ) = keyword_kind(w)
                {
                    return Some(kind);
                }
            }
            _ => {}
        }
    }
    None
}

/// A qualified table reference starting at `at` (`a.b`, `a.b.c`, `` `p.d.t` ``, `"d"."t"`), as
/// `dataset.table` (its last two parts), with the index after it. A single name (a CTE, an
/// alias, an unqualified table) is not a reference, nor is a function call (`ML.PREDICT(…)`)
/// unless `then_columns`: a write's target may be followed by its column list.
fn reference_at(tokens: &[Token], at: usize, then_columns: bool) -> Option<(String, usize)> {
    let mut parts: Vec<String> = Vec::new();
    let mut i = at;
    loop {
        match tokens.get(i) {
            Some(Token::Word(_, text)) => parts.push(text.clone()),
            Some(Token::Quoted(q)) => parts.extend(q.split('.').map(str::to_string)),
            _ => return None,
        }
        i += 1;
        if tokens.get(i) == Some(&Token::Dot) {
            i += 1;
        } else {
            break;
        }
    }
    if (!then_columns && tokens.get(i) == Some(&Token::Open)) || parts.len() < 2 || parts.iter().any(String::is_empty) {
        return None;
    }
    let n = parts.len();
    Some((format!("{}.{}", parts[n - 2], parts[n - 1]), i))
}

/// Tables read or written after FROM, JOIN, INTO, USING, UPDATE and MERGE, where those are
/// clauses of a query (not `EXTRACT(DAY FROM x.y)`): at the top level, or in parentheses that
/// open with SELECT or WITH.
fn read_tables(tokens: &[Token]) -> Vec<String> {
    let mut tables = Vec::new();
    // For each open parenthesis: whether it holds a query.
    let mut query_parens: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let in_query = query_parens.last().copied().unwrap_or(true);
        match &tokens[i] {
            Token::Open => {
                let holds_query = matches!(word(tokens.get(i + 1)), Some("SELECT" | "WITH"));
                query_parens.push(holds_query);
            }
            Token::Close => {
                query_parens.pop();
            }
            Token::Word(w, _)
                if in_query && matches!(w.as_str(), "FROM" | "JOIN" | "INTO" | "USING" | "UPDATE" | "MERGE") =>
            {
                let mut at = i + 1;
                loop {
                    let mut j = match reference_at(tokens, at, w == "INTO") {
                        Some((table, next)) => {
                            if !tables.contains(&table) {
                                tables.push(table);
                            }
                            next
                        }
                        // A CTE's name: no table, but a comma join may follow.
                        None if matches!(tokens.get(at), Some(Token::Word(..)) | Some(Token::Quoted(_)))
                            && !matches!(tokens.get(at + 1), Some(Token::Dot) | Some(Token::Open)) =>
                        {
                            at + 1
                        }
                        None => break,
                    };
                    // `FROM a.t x, b.u y`: skip an alias, then another reference after a comma.
                    if word(tokens.get(j)) == Some("AS") {
                        j += 1;
                    }
                    if matches!(tokens.get(j), Some(Token::Word(..)) | Some(Token::Quoted(_)))
                        && !word(tokens.get(j)).is_some_and(is_clause_keyword)
                    {
                        j += 1;
                    }
                    if tokens.get(j) == Some(&Token::Comma) && w == "FROM" {
                        at = j + 1;
                    } else {
                        break;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    tables
}

fn is_clause_keyword(word: &str) -> bool {
    matches!(
        word,
        "WHERE"
            | "GROUP"
            | "ORDER"
            | "LIMIT"
            | "JOIN"
            | "LEFT"
            | "RIGHT"
            | "INNER"
            | "FULL"
            | "CROSS"
            | "ON"
            | "USING"
            | "QUALIFY"
            | "HAVING"
            | "WINDOW"
            | "UNION"
            | "SET"
            | "WHEN"
            | "VALUES"
            | "SELECT"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use StatementKind::*;

    fn one(sql: &str) -> (StatementKind, Vec<String>) {
        let mut all = classify_sql(sql, Other);
        assert_eq!(all.len(), 1, "{sql}: {all:?}");
        all.remove(0)
    }

    fn tables(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn kinds_from_the_leading_keyword() {
        for (sql, kind) in [
            ("SELECT 1", Select),
            ("  select x FROM `p-1.d.t`", Select),
            ("(SELECT 1) UNION ALL (SELECT 2)", Select),
            ("WITH a AS (SELECT 1) SELECT * FROM a", Select),
            ("VALUES (1)", Select),
            ("insert into d.t (a) values (1)", Insert),
            ("INSERT `p.d.t` (a) SELECT 1", Insert),
            ("UPDATE \"d\".\"t\" SET a = 1 WHERE b = @b", Update),
            ("MERGE `p.d.t` T USING (SELECT 1 AS k) S ON T.k = S.k WHEN MATCHED THEN DELETE", Merge),
            ("DELETE FROM d.t WHERE TRUE", Delete),
            ("DELETE `p.d.t` WHERE TRUE", Delete),
            ("TRUNCATE TABLE d.t", Delete),
            ("CREATE TABLE IF NOT EXISTS d.t (a INT64)", Ddl),
            ("CREATE OR REPLACE VIEW `p.d.v` AS SELECT 1", Ddl),
            ("DROP TABLE IF EXISTS d.t", Ddl),
            ("ALTER TABLE d.t ADD COLUMN x STRING", Ddl),
            ("BEGIN TRANSACTION", Transaction),
            ("-- a comment\n/* another */ DELETE FROM d.t", Delete),
            ("WITH gone AS (SELECT id FROM d.old) DELETE FROM d.t WHERE id IN (SELECT id FROM gone)", Delete),
            ("EXPLAIN SELECT 1", Other),
        ] {
            assert_eq!(one(sql).0, kind, "{sql}");
        }
        // A query through `query` whose keyword says nothing is still a query.
        assert_eq!(classify_sql("PRAGMA version", Select)[0].0, Select);
        assert!(Merge.mutates_rows() && Delete.mutates_rows() && Update.mutates_rows() && StageCommit.mutates_rows());
        assert!(
            !Insert.mutates_rows()
                && !InsertRows.mutates_rows()
                && !AppendRows.mutates_rows()
                && !StageAppend.mutates_rows()
                && !Ddl.mutates_rows()
        );
    }

    #[test]
    fn tables_from_qualified_references_in_both_dialects() {
        assert_eq!(one("SELECT a FROM `my-project.org_acme.costs` WHERE x = 1").1, tables(&["org_acme.costs"]));
        assert_eq!(one("SELECT a FROM \"org_acme\".\"costs\" c").1, tables(&["org_acme.costs"]));
        assert_eq!(one("SELECT a FROM `my-project`.org_acme.costs").1, tables(&["org_acme.costs"]));
        assert_eq!(one("select a from Central.Runs").1, tables(&["Central.Runs"]), "names keep their case");
        // Joins, comma joins, subqueries, CTEs: every table read, each once.
        let (kind, read) =
            one("WITH latest AS (SELECT * FROM `p.c.events` QUALIFY ROW_NUMBER() OVER (PARTITION BY id) = 1) \
             SELECT * FROM latest l, `p.c.orgs` AS o JOIN `p.c.runs` r ON r.id = l.id \
             WHERE l.org IN (SELECT org FROM `p.c.events`)");
        assert_eq!(kind, Select);
        assert_eq!(read, tables(&["c.events", "c.orgs", "c.runs"]));
    }

    #[test]
    fn writes_name_their_target_first() {
        assert_eq!(
            one("INSERT INTO \"c\".\"runs\" (id, state) SELECT id, 'x' FROM \"c\".\"queue\"").1,
            tables(&["c.runs", "c.queue"])
        );
        assert_eq!(one("INSERT `p.c.runs` (id) VALUES (@id)").1, tables(&["c.runs"]));
        assert_eq!(
            one("MERGE `p.o.facts` AS t USING (SELECT a AS s_a FROM `p.o.facts__staging` WHERE id = @id) AS s \
                 ON FALSE WHEN NOT MATCHED BY SOURCE AND (day = @d) THEN DELETE WHEN NOT MATCHED THEN INSERT (a) VALUES (s_a)")
            .1,
            tables(&["o.facts", "o.facts__staging"])
        );
        assert_eq!(one("MERGE INTO d.t USING d.u ON t.k = u.k WHEN MATCHED THEN DELETE").1, tables(&["d.t", "d.u"]));
        assert_eq!(one("UPDATE `p.c.runs` SET state = @s WHERE id = @id").1, tables(&["c.runs"]));
        assert_eq!(
            one("DELETE FROM `p.c.runs` WHERE id IN (SELECT id FROM `p.c.old`)").1,
            tables(&["c.runs", "c.old"])
        );
        assert_eq!(one("CREATE OR REPLACE VIEW `p.c.v` AS SELECT * FROM `p.c.runs`").1, tables(&["c.v", "c.runs"]));
        assert_eq!(one("DROP VIEW IF EXISTS \"c\".\"v\"").1, tables(&["c.v"]));
    }

    #[test]
    fn conservative_where_unsure() {
        // Not tables: unqualified names, function calls, FROM inside a function, names inside
        // literals, comments and parameters.
        assert_eq!(one("SELECT * FROM runs").1, tables(&[]));
        assert_eq!(one("SELECT * FROM UNNEST(@rows) AS r").1, tables(&[]));
        assert_eq!(one("SELECT EXTRACT(DAY FROM r.started_at) FROM `p.c.runs` r").1, tables(&["c.runs"]));
        assert_eq!(one("SELECT 'FROM x.y' AS s, \"a\" FROM d.t -- FROM e.f\n").1, tables(&["d.t"]));
        assert_eq!(one("SELECT * FROM ML.PREDICT(MODEL m, TABLE d.t)").1, tables(&[]));
        assert_eq!(one("SELECT @from_date FROM d.t").1, tables(&["d.t"]));
        // A write whose target cannot be read names no table rather than a wrong one.
        assert_eq!(one("DELETE FROM runs WHERE TRUE"), (Delete, Vec::new()));
    }

    #[test]
    fn several_statements_are_several_entries() {
        let all = classify_sql(
            "BEGIN TRANSACTION; DELETE FROM d.t WHERE day = '2024-01-01;'; INSERT INTO d.t SELECT * FROM d.s; COMMIT TRANSACTION;",
            Other,
        );
        let kinds: Vec<StatementKind> = all.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, vec![Transaction, Delete, Insert, Transaction]);
        assert_eq!(all[2].1, tables(&["d.t", "d.s"]));
    }

    #[test]
    fn summary_counts_by_kind_and_table() {
        let log = StatementLog::default();
        log.push_sql("SELECT * FROM c.runs JOIN c.orgs ON TRUE", Select);
        log.push_sql("INSERT INTO c.runs (a) VALUES (1)", Other);
        log.push_sql("INSERT INTO c.runs (a) VALUES (2)", Other);
        log.push(Metadata, Vec::new());
        let summary = log.summary();
        assert_eq!(summary.count(Insert, "c.runs"), 2);
        assert_eq!(summary.count(Select, "c.orgs"), 1);
        assert_eq!(summary.count(Metadata, ""), 1);
        assert_eq!(summary.count_kind(Select), 2);
        assert_eq!(summary.to_string(), "SELECT\tc.orgs\t1\nSELECT\tc.runs\t1\nINSERT\tc.runs\t2\nmetadata\t-\t1\n");
        let statements = log.take();
        assert_eq!(statements.len(), 4);
        assert!(statements[1].touches("c", "runs") && statements[1].touches_dataset("c"));
        assert!(!statements[1].touches("c", "orgs"));
        assert!(log.snapshot().is_empty(), "take forgets");
    }
}
