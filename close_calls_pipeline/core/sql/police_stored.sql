-- Bring the stored calls under a stricter personal_data policy, once `_raw` has been through
-- the same Python function as new records (personal_data._rewrite_stored): the typed personal
-- columns read back from the policed `_raw`, and utterance texts dropped when `$drop_text` (the
-- question flag kept, computed as the dbt models do).
UPDATE close.calls
SET phone = _raw ->> '$.phone',
    local_phone = _raw ->> '$.local_phone',
    local_phone_formatted = _raw ->> '$.local_phone_formatted',
    remote_phone = _raw ->> '$.remote_phone',
    remote_phone_formatted = _raw ->> '$.remote_phone_formatted',
    note = _raw ->> '$.note',
    note_html = _raw ->> '$.note_html',
    recording_url = _raw ->> '$.recording_url',
    voicemail_url = _raw ->> '$.voicemail_url',
    recording_summary_text = _raw ->> '$.recording_transcript.summary_text',
    recording_summary_html = _raw ->> '$.recording_transcript.summary_html',
    voicemail_summary_text = _raw ->> '$.voicemail_transcript.summary_text',
    voicemail_summary_html = _raw ->> '$.voicemail_transcript.summary_html',
    _raw_hash = hash(_raw);

UPDATE close.call_transcript_utterances
SET is_question = coalesce(is_question, contains(text, '?')), text = NULL
WHERE $drop_text AND text IS NOT NULL;
