-- The content of the reference tables the marts join (outcome names, user names), as one hash:
-- a change renames rows of calls that did not change, so it needs a full refresh.
SELECT md5(coalesce(string_agg(row_text, chr(10) ORDER BY row_text), ''))
FROM (
    SELECT 'outcome ' || CAST(o AS VARCHAR) AS row_text
    FROM (SELECT * EXCLUDE (_loaded_at) FROM close.outcomes) AS o
    UNION ALL
    SELECT 'user ' || CAST(u AS VARCHAR)
    FROM (SELECT * EXCLUDE (_loaded_at) FROM close.users) AS u
)
