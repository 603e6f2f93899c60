-- Support loop, per model version per day: live rows, rows a human reviewed, rows corrected to another
-- label, correction rate (corrected / rows) and accuracy against the human labels (agreed / reviewed).
-- Reads the interaction table as tuneloop.ingest writes it (meta.record_id, meta.model_version,
-- meta.corrects); a record id counts once, and the latest correction of a row is the human label.
WITH tagged AS (
  SELECT
    JSON_VALUE(meta, '$.record_id') AS record_id,
    JSON_VALUE(meta, '$.model_version') AS model_version,
    JSON_VALUE(meta, '$.corrects') AS corrects,
    label, source, created_at, ingested_at
  FROM {{interactions}}
),
live AS (
  SELECT record_id, model_version, label, created_at
  FROM tagged
  WHERE source = 'live' AND record_id IS NOT NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY record_id ORDER BY ingested_at) = 1
),
human AS (
  SELECT corrects, label AS human_label
  FROM tagged
  WHERE source = 'corrected' AND corrects IS NOT NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY corrects ORDER BY created_at DESC, ingested_at DESC) = 1
)
SELECT
  DATE(live.created_at) AS day,
  live.model_version AS model_version,
  CAST(COUNT(*) AS INT64) AS live_rows,
  CAST(COUNTIF(human.corrects IS NOT NULL) AS INT64) AS reviewed,
  CAST(COUNTIF(human.human_label != live.label) AS INT64) AS corrected,
  SAFE_DIVIDE(COUNTIF(human.human_label != live.label), COUNT(*)) AS correction_rate,
  SAFE_DIVIDE(COUNTIF(human.human_label = live.label), COUNTIF(human.corrects IS NOT NULL)) AS accuracy
FROM live
LEFT JOIN human ON human.corrects = live.record_id
GROUP BY day, model_version
