-- Recording-transcript utterances of existing calls, one row per utterance, in utterance_index
-- order (start times never reorder them), with the per-utterance facts fct_call_conversations
-- aggregates: speaker switches, runs of one side (gaps and islands) and contact -> user gaps.
-- (macros/sequence_utterances.sql: fct_call_conversations' incremental build uses it on the
-- changed calls' utterances only.)
{{ config(meta={"changed_rows": "calls"}) }}  {#- its tests: macros/incremental_build.sql #}
{{ sequence_utterances(ref('stg_close__call_transcript_utterances')) }}
