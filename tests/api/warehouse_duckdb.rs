//! DuckDB conformance (being written).
