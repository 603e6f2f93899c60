-- The newest landing time in the table (NULL when it is empty).
SELECT MAX(ingested_at) AS max_ingested_at, COUNT(*) AS row_count FROM {{table}}
