-- Which of the given document paths a table (the game table or its dead-letter table) already holds.
--   @paths  ARRAY<STRING>  document paths of the rows about to be inserted
SELECT DISTINCT document_path FROM {{table}} WHERE document_path IN UNNEST(@paths)
