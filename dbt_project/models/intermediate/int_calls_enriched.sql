-- Existing calls joined to their outcome, user and transcript aggregates, with reporting date and
-- flags. (macros/enrich_calls.sql: fct_calls' incremental build enriches the changed calls only.)
{{ config(meta={"changed_rows": "calls"}) }}  {#- its tests: macros/incremental_build.sql #}
{{ calls_enriched(ref('stg_close__calls'), ref('int_call_transcripts_aggregated')) }}
