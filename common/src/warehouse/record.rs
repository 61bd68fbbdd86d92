//! Records: rows in positional, typed form. A [`Record`] has one [`Cell`] per column of a
//! schema, in the schema's order, so a large write or read touches no column names per row and
//! parses no text: the pipelines stage records ([`Staging::append`](super::Staging::append)) and
//! read them back ([`Warehouse::query_batches`](super::Warehouse::query_batches)). The keyed
//! [`Row`] stays the form of everything small (queries, inserts, API answers); the two convert
//! into each other by a schema.

use std::collections::HashSet;
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use super::{format_timestamp, FieldIndex, FieldType, Mode, Row, TableSchema, WarehouseError, WarehouseResult};

/// One value of a record. Which cells a column takes follows its type: STRING and JSON (the
/// document's text) `Text`/`Static`, BYTES `Bytes`, INT64 `Int`, FLOAT64 `Float`, NUMERIC
/// `Numeric`, BOOL `Bool`, DATE `Date`, TIMESTAMP `Timestamp`, RECORD and REPEATED columns
/// `Nested` (their canonical JSON); any column `Null` unless it is REQUIRED.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Numeric(Decimal),
    Text(String),
    /// Text known at compile time (a status, a type name): no allocation per row.
    Static(&'static str),
    /// Text many records repeat (a model, a project, the organization), shared through an
    /// [`Interner`]: one allocation per distinct value instead of one per cell.
    Shared(Arc<str>),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    Timestamp(DateTime<Utc>),
    Nested(Box<Value>),
}

/// Hands out [`Cell::Shared`] text: the first occurrence of a value is allocated once, later
/// ones share it. Pipelines repeat a handful of models, projects and keys over a window's
/// hundred thousand rows, so this replaces most per-cell allocations (and their frees on other
/// threads) with a lookup. Bounded: past `MAX_DISTINCT` values new text is allocated per cell.
#[derive(Debug, Default)]
pub struct Interner {
    values: HashSet<Arc<str>>,
}

impl Interner {
    /// Distinct values kept per interner (a step's or a query's): a few MB at most.
    const MAX_DISTINCT: usize = 65_536;

    pub fn text(&mut self, value: &str) -> Cell {
        if let Some(shared) = self.values.get(value) {
            return Cell::Shared(shared.clone());
        }
        if self.values.len() >= Self::MAX_DISTINCT {
            return Cell::Text(value.to_string());
        }
        let shared: Arc<str> = Arc::from(value);
        self.values.insert(shared.clone());
        Cell::Shared(shared)
    }

    pub fn opt_text(&mut self, value: Option<&str>) -> Cell {
        value.map_or(Cell::Null, |v| self.text(v))
    }
}

/// A row in positional form: one cell per column of its schema, in the schema's order.
pub type Record = Vec<Cell>;

impl Cell {
    /// A count (tokens, requests) as INT64, saturating at i64::MAX.
    pub fn count(value: u64) -> Cell {
        Cell::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }

    pub fn opt_count(value: Option<u64>) -> Cell {
        value.map_or(Cell::Null, Cell::count)
    }

    pub fn opt_numeric(value: Option<Decimal>) -> Cell {
        value.map_or(Cell::Null, Cell::Numeric)
    }

    pub fn opt_bool(value: Option<bool>) -> Cell {
        value.map_or(Cell::Null, Cell::Bool)
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Text(s) => Some(s),
            Cell::Static(s) => Some(s),
            Cell::Shared(s) => Some(s),
            _ => None,
        }
    }

    /// A count back: INT64 values below zero (never written by this service) read as 0.
    pub fn as_u64(&self) -> u64 {
        match self {
            Cell::Int(i) => u64::try_from(*i).unwrap_or(0),
            _ => 0,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Cell::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_date(&self) -> Option<NaiveDate> {
        match self {
            Cell::Date(d) => Some(*d),
            _ => None,
        }
    }

    /// Takes the cell out, leaving `Null` (moves a read value into a new record without a copy).
    pub fn take(&mut self) -> Cell {
        std::mem::replace(self, Cell::Null)
    }

    /// Whether a column of this type and mode takes this cell.
    pub fn fits(&self, field_type: FieldType, mode: Mode) -> bool {
        if mode == Mode::Repeated || field_type == FieldType::Record {
            return matches!(self, Cell::Null | Cell::Nested(_));
        }
        matches!(
            (field_type, self),
            (_, Cell::Null)
                | (FieldType::String | FieldType::Json, Cell::Text(_) | Cell::Static(_) | Cell::Shared(_))
                | (FieldType::Bytes, Cell::Bytes(_))
                | (FieldType::Int64, Cell::Int(_))
                | (FieldType::Float64, Cell::Float(_))
                | (FieldType::Numeric, Cell::Numeric(_))
                | (FieldType::Bool, Cell::Bool(_))
                | (FieldType::Date, Cell::Date(_))
                | (FieldType::Timestamp, Cell::Timestamp(_))
        )
    }

    /// The cell in the canonical row form (see [`Row`]).
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Int(i) => Value::from(*i),
            Cell::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Cell::Numeric(d) => Value::String(numeric_text(*d)),
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Static(s) => Value::String((*s).to_string()),
            Cell::Shared(s) => Value::String(s.to_string()),
            Cell::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            Cell::Date(d) => Value::String(d.to_string()),
            Cell::Timestamp(ts) => Value::String(format_timestamp(ts)),
            Cell::Nested(v) => (**v).clone(),
        }
    }

    /// A canonical JSON value of a column as a cell, or what is wrong with it. Numbers may come
    /// as JSON numbers or text; a JSON column takes a document's text or any JSON value.
    pub fn from_json(field_type: FieldType, mode: Mode, value: &Value) -> Result<Cell, String> {
        if value.is_null() {
            return Ok(Cell::Null);
        }
        if mode == Mode::Repeated || field_type == FieldType::Record {
            return match value {
                Value::Array(_) if mode == Mode::Repeated => Ok(Cell::Nested(Box::new(value.clone()))),
                Value::Object(_) if mode != Mode::Repeated => Ok(Cell::Nested(Box::new(value.clone()))),
                _ if mode == Mode::Repeated => Err(format!("expects an array, got {value}")),
                _ => Err(format!("expects an object, got {value}")),
            };
        }
        let invalid = |what: &str| format!("expects {what}, got {value}");
        Ok(match (field_type, value) {
            (FieldType::String, Value::String(s)) => Cell::Text(s.clone()),
            (FieldType::Json, Value::String(s)) => Cell::Text(s.clone()),
            (FieldType::Json, other) => Cell::Text(other.to_string()),
            (FieldType::Bytes, Value::String(s)) => {
                Cell::Bytes(base64::engine::general_purpose::STANDARD.decode(s).map_err(|_| invalid("base64 bytes"))?)
            }
            (FieldType::Int64, Value::Number(n)) => Cell::Int(n.as_i64().ok_or_else(|| invalid("an INT64"))?),
            (FieldType::Int64, Value::String(s)) => Cell::Int(s.trim().parse().map_err(|_| invalid("an INT64"))?),
            (FieldType::Float64, Value::Number(n)) => Cell::Float(n.as_f64().ok_or_else(|| invalid("a FLOAT64"))?),
            (FieldType::Float64, Value::String(s)) => Cell::Float(s.trim().parse().map_err(|_| invalid("a FLOAT64"))?),
            (FieldType::Numeric, Value::Number(n)) => {
                Cell::Numeric(parse_numeric(&n.to_string()).ok_or_else(|| invalid(NUMERIC_RANGE))?)
            }
            (FieldType::Numeric, Value::String(s)) => {
                Cell::Numeric(parse_numeric(s.trim()).ok_or_else(|| invalid(NUMERIC_RANGE))?)
            }
            (FieldType::Bool, Value::Bool(b)) => Cell::Bool(*b),
            (FieldType::Date, Value::String(s)) => Cell::Date(s.parse().map_err(|_| invalid("a YYYY-MM-DD date"))?),
            (FieldType::Timestamp, Value::String(s)) => {
                Cell::Timestamp(parse_timestamp(s).ok_or_else(|| invalid("an RFC 3339 timestamp"))?)
            }
            (FieldType::String, _) => return Err(invalid("a string")),
            (FieldType::Bool, _) => return Err(invalid("true or false")),
            _ => return Err(invalid(&format!("a {field_type:?} value"))),
        })
    }
}

const NUMERIC_RANGE: &str = "a decimal with at most 28 significant digits";

/// Decimal text (`12.5`, `-0.000000001`, `1e-3`) as an exact decimal.
fn parse_numeric(text: &str) -> Option<Decimal> {
    text.parse::<Decimal>().ok().or_else(|| Decimal::from_scientific(text).ok())
}

/// RFC 3339 with any offset, or a naive `YYYY-MM-DD HH:MM:SS[.f]` taken as UTC.
fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
        ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
            .map(|t| t.and_utc())
    })
}

/// A NUMERIC in the canonical text: exact, without trailing zeros (`0`, never `-0`).
pub fn numeric_text(d: Decimal) -> String {
    let n = d.normalize();
    if n.is_zero() {
        "0".to_string()
    } else {
        n.to_string()
    }
}

/// A keyed row as a record of `schema`: unknown columns and values a column cannot hold are
/// refused, naming the column; absent columns are `Null`.
pub fn to_record(schema: &TableSchema, row: &Row) -> WarehouseResult<Record> {
    let mut record = vec![Cell::Null; schema.fields.len()];
    let mut problem = None;
    FieldIndex::new(schema)
        .walk(row, |pos, value| {
            let Some(value) = value else { return };
            let f = &schema.fields[pos];
            match Cell::from_json(f.field_type, f.mode, value) {
                Ok(cell) => record[pos] = cell,
                Err(e) => {
                    problem.get_or_insert_with(|| format!("column {:?} {e}", f.name));
                }
            }
        })
        .map_err(|unknown| WarehouseError::Invalid(format!("column {unknown:?} is not in table {}", schema.name)))?;
    match problem {
        Some(p) => Err(WarehouseError::Invalid(p)),
        None => Ok(record),
    }
}

/// Keyed rows as records, refusals naming the row.
pub fn to_records(schema: &TableSchema, rows: &[Row]) -> WarehouseResult<Vec<Record>> {
    rows.iter().enumerate().map(|(i, row)| to_record(schema, row).map_err(|e| at_row(i, e))).collect()
}

/// A record of `schema` as a keyed row in the canonical form (NULL cells as nulls).
pub fn to_keyed_row(schema: &TableSchema, record: &[Cell]) -> Row {
    schema.fields.iter().zip(record).map(|(f, cell)| (f.name.clone(), cell.to_json())).collect()
}

/// Checks a record against its schema before anything of it is written: its width, REQUIRED
/// cells, and each cell's kind against its column's type.
pub(crate) fn check_record(schema: &TableSchema, record: &[Cell]) -> WarehouseResult<()> {
    if record.len() != schema.fields.len() {
        return Err(WarehouseError::Invalid(format!(
            "a record of table {} has {} cells, the table {} columns",
            schema.name,
            record.len(),
            schema.fields.len()
        )));
    }
    for (f, cell) in schema.fields.iter().zip(record) {
        if cell.is_null() && f.mode == Mode::Required {
            return Err(WarehouseError::Invalid(format!("column {:?} of table {} is REQUIRED", f.name, schema.name)));
        }
        if !cell.fits(f.field_type, f.mode) {
            return Err(WarehouseError::Invalid(format!(
                "column {:?} of table {} is {:?}, not {}",
                f.name,
                schema.name,
                f.field_type,
                cell.kind()
            )));
        }
    }
    Ok(())
}

impl Cell {
    /// What kind of cell this is, for errors.
    fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "NULL",
            Cell::Bool(_) => "a BOOL",
            Cell::Int(_) => "an INT64",
            Cell::Float(_) => "a FLOAT64",
            Cell::Numeric(_) => "a NUMERIC",
            Cell::Text(_) | Cell::Static(_) | Cell::Shared(_) => "text",
            Cell::Bytes(_) => "bytes",
            Cell::Date(_) => "a DATE",
            Cell::Timestamp(_) => "a TIMESTAMP",
            Cell::Nested(_) => "a nested value",
        }
    }
}

/// Says which row of a batch an error is about.
pub(crate) fn at_row(i: usize, e: WarehouseError) -> WarehouseError {
    match e {
        WarehouseError::Invalid(m) | WarehouseError::Backend(m) => WarehouseError::Invalid(format!("row {i}: {m}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> TableSchema {
        let mut s: TableSchema = serde_json::from_value(json!({"description": "", "fields": [
            {"name": "day", "type": "DATE", "mode": "REQUIRED"},
            {"name": "n", "type": "INT64"},
            {"name": "amount", "type": "NUMERIC"},
            {"name": "at", "type": "TIMESTAMP"},
            {"name": "tags", "type": "STRING", "mode": "REPEATED"},
            {"name": "doc", "type": "JSON"}
        ]}))
        .unwrap();
        s.name = "t".into();
        s
    }

    #[test]
    fn rows_and_records_convert_both_ways() {
        let s = schema();
        let row = super::super::to_row(json!({
            "day": "2026-11-01", "n": "7", "amount": 1.50, "at": "2026-11-01T02:00:00+02:00",
            "tags": ["a"], "doc": {"k": 1}
        }));
        let rec = to_record(&s, &row).unwrap();
        assert_eq!(rec[1], Cell::Int(7));
        assert_eq!(rec[2], Cell::Numeric("1.5".parse().unwrap()));
        check_record(&s, &rec).unwrap();
        let back = to_keyed_row(&s, &rec);
        assert_eq!(back["at"], "2026-11-01T00:00:00.000000Z", "offsets become UTC");
        assert_eq!((back["amount"].as_str(), back["doc"].as_str()), (Some("1.5"), Some("{\"k\":1}")));
        assert_eq!(back["tags"], json!(["a"]));
    }

    #[test]
    fn bad_values_are_refused_with_the_column() {
        let s = schema();
        let refuse = |v: Value| to_record(&s, &super::super::to_row(v)).unwrap_err().to_string();
        assert!(refuse(json!({"day": "yesterday"})).contains("\"day\""));
        assert!(refuse(json!({"day": "2026-11-01", "amount": "lots"})).contains("\"amount\""));
        assert!(refuse(json!({"day": "2026-11-01", "nope": 1})).contains("\"nope\" is not in table t"));
        assert!(refuse(json!({"day": "2026-11-01", "tags": "a"})).contains("array"));
        // Records: REQUIRED, kinds and width are checked.
        let mut rec = vec![Cell::Null; 6];
        assert!(check_record(&s, &rec).unwrap_err().to_string().contains("REQUIRED"));
        rec[0] = Cell::Static("2026-11-01");
        assert!(check_record(&s, &rec).unwrap_err().to_string().contains("not text"));
        rec[0] = Cell::Date(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        check_record(&s, &rec).unwrap();
        rec.pop();
        assert!(check_record(&s, &rec).is_err(), "a short record");
    }

    #[test]
    fn interned_text_is_shared_and_bounded() {
        let mut names = Interner::default();
        let (a, b) = (names.text("gpt-4o"), names.text("gpt-4o"));
        match (&a, &b) {
            (Cell::Shared(x), Cell::Shared(y)) => assert!(Arc::ptr_eq(x, y), "one allocation per value"),
            other => panic!("expected shared text, got {other:?}"),
        }
        assert_eq!((a.as_str(), a.to_json()), (Some("gpt-4o"), Value::String("gpt-4o".into())));
        assert!(a.fits(FieldType::String, Mode::Required) && !a.fits(FieldType::Int64, Mode::Nullable));
        assert_eq!(names.opt_text(None), Cell::Null);
        for i in 0..Interner::MAX_DISTINCT {
            names.text(&i.to_string());
        }
        assert!(matches!(names.text("one more"), Cell::Text(_)), "past the bound, text is not kept");
    }

    #[test]
    fn numeric_text_is_canonical() {
        assert_eq!(numeric_text("1.2300".parse().unwrap()), "1.23");
        assert_eq!(numeric_text("-0.000".parse().unwrap()), "0");
        let cents: Decimal = "123.78912".parse().unwrap();
        assert_eq!(numeric_text(cents * Decimal::ONE_HUNDRED), "12378.912");
        assert_eq!(parse_numeric("1e-3"), Some("0.001".parse().unwrap()));
    }
}
