-- Game loop, per AI model version per day: games played, AI seats, survivals, AI survival rate.
-- Reads the game table (tuneloop.warehouse.games), one row per document path (a redelivery counts once).
WITH games AS (
  SELECT document_path, ended_at, ai_seats
  FROM {{games}}
  QUALIFY ROW_NUMBER() OVER (PARTITION BY document_path ORDER BY ingested_at) = 1
)
SELECT
  DATE(g.ended_at) AS day,
  seat.provider AS provider,
  seat.model_id AS model_id,
  seat.registry_version AS model_version,
  CAST(COUNT(DISTINCT g.document_path) AS INT64) AS games,
  CAST(COUNT(*) AS INT64) AS ai_seats,
  CAST(COUNTIF(seat.outcome = 'survived') AS INT64) AS survived,
  SAFE_DIVIDE(COUNTIF(seat.outcome = 'survived'), COUNT(*)) AS survival_rate
FROM games AS g
CROSS JOIN UNNEST(g.ai_seats) AS seat
GROUP BY day, provider, model_id, model_version
