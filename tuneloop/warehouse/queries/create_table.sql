-- The interaction table of one loop (BigQuery Standard SQL; DuckDB runs it transpiled).
-- Column names: tuneloop.warehouse.base.TABLE_COLUMNS. ingested_at is the watermark column.
CREATE TABLE IF NOT EXISTS {{table}} (
  id STRING,
  messages STRING,
  label STRING,
  source STRING,
  weight FLOAT64,
  created_at TIMESTAMP,
  meta STRING,
  ingested_at TIMESTAMP NOT NULL
)
