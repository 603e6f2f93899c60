-- Game loop extract: one row per AI seat that survived a game that landed after the watermark.
-- Reads the game table (tuneloop.warehouse.games), one row per document path (a redelivery counts once).
-- tuneloop.warehouse.game_chat turns each row into one training conversation (the seat's own lines are
-- assistant turns, the other players' lines user turns "Name: text", a system turn with the persona).
-- Seats whose outcome is neither 'survived' nor 'voted_out' are returned too, so that they are
-- quarantined with a reason instead of vanishing; a game with no chat at all is returned for the same reason.
--   @watermark       TIMESTAMP  (bound by tuneloop) games that landed after the last published dataset
--   @read_until      TIMESTAMP  (bound by tuneloop) and at or before now - settle_seconds
--   @min_messages    INT64      games with fewer chat lines than this are skipped (query_params, default 6)
--   @persona_prompt  STRING     the system turn; '' = the game's persona_prompt column, else the packaged
--                               default (tuneloop.warehouse.game_chat.DEFAULT_PERSONA)
WITH games AS (
  SELECT document_path, game_id, ended_at, ai_seats, chat_log, persona_prompt, ingested_at
  FROM {{table}}
  WHERE ingested_at > @watermark AND ingested_at <= @read_until
  QUALIFY ROW_NUMBER() OVER (PARTITION BY document_path ORDER BY ingested_at) = 1
)
SELECT
  g.document_path AS document_path,
  g.game_id AS game_id,
  g.ended_at AS ended_at,
  seat.player AS seat_player,
  seat.provider AS seat_provider,
  seat.model_id AS seat_model_id,
  seat.registry_version AS seat_registry_version,
  seat.outcome AS seat_outcome,
  g.chat_log AS chat_log,
  COALESCE(NULLIF(@persona_prompt, ''), g.persona_prompt) AS persona_prompt,
  g.ingested_at AS ingested_at
FROM games AS g
CROSS JOIN UNNEST(g.ai_seats) AS seat
WHERE (seat.outcome IS NULL OR LOWER(TRIM(seat.outcome)) NOT IN ('voted_out', 'voted out', 'voted-out'))
  AND (COALESCE(ARRAY_LENGTH(g.chat_log), 0) = 0 OR ARRAY_LENGTH(g.chat_log) >= @min_messages)
