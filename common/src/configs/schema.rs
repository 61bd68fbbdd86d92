//! Table schemas in BigQuery's table-schema JSON, as kept under `configs/`. DuckDB types are
//! derived from the same file, so there is one definition of every table.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

pub use crate::domain::is_identifier;

/// A table definition: the file `configs/.../schemas/<table>.json`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableSchema {
    /// Table name; taken from the file name, never from the file's content.
    #[serde(skip)]
    pub name: String,
    /// What the table is for.
    pub description: String,
    /// Time partitioning (BigQuery); DuckDB ignores it.
    #[serde(default)]
    pub partitioning: Option<Partitioning>,
    /// Clustering columns (BigQuery, at most four); DuckDB ignores them.
    #[serde(default)]
    pub clustering: Vec<String>,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Partitioning {
    /// DAY, HOUR, MONTH or YEAR.
    #[serde(rename = "type")]
    pub kind: String,
    /// A TIMESTAMP or DATE column of the table.
    pub field: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub description: String,
    /// Sub-fields of a RECORD.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum FieldType {
    String,
    Bytes,
    #[serde(alias = "INTEGER")]
    Int64,
    #[serde(alias = "FLOAT")]
    Float64,
    Numeric,
    #[serde(alias = "BOOLEAN")]
    Bool,
    Timestamp,
    Date,
    Json,
    #[serde(alias = "STRUCT")]
    Record,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mode {
    #[default]
    Nullable,
    Required,
    Repeated,
}

impl TableSchema {
    /// Every problem with the schema, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !is_identifier(&self.name) {
            problems.push(format!("table name {:?} is not a valid identifier", self.name));
        }
        if self.fields.is_empty() {
            problems.push("a table needs at least one field".into());
        }
        check_fields(&self.fields, "", &mut problems);
        if let Some(p) = &self.partitioning {
            if !matches!(p.kind.as_str(), "DAY" | "HOUR" | "MONTH" | "YEAR") {
                problems.push(format!("partitioning type {:?} is not DAY, HOUR, MONTH or YEAR", p.kind));
            }
            match self.field(&p.field) {
                Some(f)
                    if matches!(f.field_type, FieldType::Timestamp | FieldType::Date) && f.mode != Mode::Repeated => {}
                Some(_) => problems.push(format!("partitioning field {:?} must be a TIMESTAMP or DATE", p.field)),
                None => problems.push(format!("partitioning field {:?} is not a field of the table", p.field)),
            }
        }
        if self.clustering.len() > 4 {
            problems.push("clustering allows at most 4 fields".into());
        }
        for c in &self.clustering {
            match self.field(c) {
                Some(f)
                    if f.field_type != FieldType::Record
                        && f.field_type != FieldType::Json
                        && f.mode != Mode::Repeated => {}
                Some(_) => problems.push(format!("clustering field {c:?} must be a scalar column")),
                None => problems.push(format!("clustering field {c:?} is not a field of the table")),
            }
        }
        problems
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

fn check_fields(fields: &[Field], prefix: &str, problems: &mut Vec<String>) {
    let mut seen = HashSet::new();
    for f in fields {
        let path = format!("{prefix}{}", f.name);
        if !is_identifier(&f.name) {
            problems.push(format!("field {path:?} is not a valid identifier"));
        }
        if !seen.insert(f.name.to_ascii_lowercase()) {
            problems.push(format!("field {path:?} appears twice"));
        }
        match (f.field_type, f.fields.is_empty()) {
            (FieldType::Record, true) => problems.push(format!("RECORD field {path:?} needs sub-fields")),
            (FieldType::Record, false) => check_fields(&f.fields, &format!("{path}."), problems),
            (_, false) => problems.push(format!("field {path:?} has sub-fields but is not a RECORD")),
            (_, true) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(json: &str) -> TableSchema {
        let mut s: TableSchema = serde_json::from_str(json).unwrap();
        s.name = "t".into();
        s
    }

    #[test]
    fn valid_schema_has_no_problems() {
        let s = schema(
            r#"{"description":"d","partitioning":{"type":"DAY","field":"at"},"clustering":["org"],
            "fields":[{"name":"org","type":"STRING","mode":"REQUIRED"},{"name":"at","type":"TIMESTAMP"},
            {"name":"tags","type":"RECORD","mode":"REPEATED","fields":[{"name":"k","type":"STRING"}]}]}"#,
        );
        assert!(s.problems().is_empty(), "{:?}", s.problems());
    }

    #[test]
    fn problems_are_all_reported() {
        let s = schema(
            r#"{"description":"d","partitioning":{"type":"WEEK","field":"org"},"clustering":["nope"],
            "fields":[{"name":"org","type":"STRING"},{"name":"org","type":"STRING"},{"name":"r","type":"RECORD"},{"name":"bad-name","type":"INT64"}]}"#,
        );
        let p = s.problems();
        assert_eq!(p.len(), 6, "{p:?}");
    }

    #[test]
    fn unknown_keys_and_types_are_refused() {
        assert!(serde_json::from_str::<TableSchema>(r#"{"description":"d","fields":[],"extra":1}"#).is_err());
        assert!(serde_json::from_str::<TableSchema>(
            r#"{"description":"d","fields":[{"name":"a","type":"GEOGRAPHY"}]}"#
        )
        .is_err());
    }
}
