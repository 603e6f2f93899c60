-- Rows that landed after the watermark, oldest landing first.
--   @watermark  TIMESTAMP  read rows with ingested_at > @watermark
--   @read_until TIMESTAMP  and ingested_at <= @read_until (lets in-flight inserts settle)
--   @max_rows   INT64      about this many rows; rows that share the last ingested_at are never
--                          split, so the next run's ingested_at > watermark cannot skip any of them
WITH fresh AS (
  SELECT id, messages, label, source, weight, created_at, meta, ingested_at
  FROM {{table}}
  WHERE ingested_at > @watermark AND ingested_at <= @read_until
),
cutoff AS (
  SELECT MAX(head.ingested_at) AS upto
  FROM (SELECT ingested_at FROM fresh ORDER BY ingested_at LIMIT @max_rows) AS head
)
SELECT fresh.id, fresh.messages, fresh.label, fresh.source, fresh.weight, fresh.created_at, fresh.meta,
  fresh.ingested_at
FROM fresh
CROSS JOIN cutoff
WHERE fresh.ingested_at <= cutoff.upto
ORDER BY fresh.ingested_at, fresh.id
