-- Which of the given record ids an interaction table already holds (tuneloop.ingest, before a retry).
--   @since  TIMESTAMP      only rows that landed at or after this (the first try of those rows)
--   @ids    ARRAY<STRING>  the record ids (meta.record_id) of the rows about to be written again
SELECT DISTINCT JSON_VALUE(meta, '$.record_id') AS record_id
FROM {{table}}
WHERE ingested_at >= @since AND JSON_VALUE(meta, '$.record_id') IN UNNEST(@ids)
