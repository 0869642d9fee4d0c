-- One row per call that has at least one transcript utterance (recording and voicemail combined).
-- (macros/enrich_calls.sql: fct_calls' incremental build aggregates the changed calls' only.)
{{ config(meta={"changed_rows": "calls"}) }}  {#- its tests: macros/incremental_build.sql #}
{{ aggregate_transcripts(ref('stg_close__call_transcript_utterances')) }}
