-- What must be the same in the warehouse and the previous read-only copy before the copy is
-- brought up to date row by row: schemas, the tables' columns (name, type, nullability, in
-- order) and the views' SQL, of the attached database `$database`.
SELECT 'schema' AS kind, schema_name, '' AS name, 0 AS position, '' AS definition
FROM duckdb_schemas() WHERE database_name = $database AND NOT internal
UNION ALL
SELECT 'column', schema_name, table_name, column_index, column_name || ' ' || data_type || ' '
    || is_nullable::VARCHAR
FROM duckdb_columns() WHERE database_name = $database AND NOT internal
UNION ALL
SELECT 'view', schema_name, view_name, 0, sql
FROM duckdb_views() WHERE database_name = $database AND NOT internal
ORDER BY ALL
