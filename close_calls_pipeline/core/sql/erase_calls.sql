-- Remove the personal fields of the calls listed in `erased_calls` (id): phone numbers, note,
-- recording and voicemail URLs, transcript summaries, the same inside `_raw` (a JSON merge patch
-- with nulls removes those keys, transcripts included), their utterances' text and their
-- quarantined payloads. Id, dates, disposition, duration, cost and `_deleted_at` stay.
-- The last two statements return the utterance texts and payloads removed.
UPDATE close.calls
SET phone = NULL, local_phone = NULL, local_phone_formatted = NULL,
    remote_phone = NULL, remote_phone_formatted = NULL,
    note = NULL, note_html = NULL, recording_url = NULL, voicemail_url = NULL,
    recording_summary_text = NULL, recording_summary_html = NULL,
    voicemail_summary_text = NULL, voicemail_summary_html = NULL,
    _raw = json_merge_patch(_raw, '{"phone": null, "local_phone": null,
        "local_phone_formatted": null, "remote_phone": null, "remote_phone_formatted": null,
        "note": null, "note_html": null, "recording_url": null, "voicemail_url": null,
        "recording_transcript": null, "voicemail_transcript": null}')
WHERE id IN (SELECT id FROM erased_calls);

UPDATE close.calls SET _raw_hash = hash(_raw)
WHERE id IN (SELECT id FROM erased_calls);

-- The question flag is kept (computed as the dbt models do) so conversation metrics stay exact.
UPDATE close.call_transcript_utterances
SET is_question = coalesce(is_question, contains(text, '?')), text = NULL
WHERE call_id IN (SELECT id FROM erased_calls) AND text IS NOT NULL;

UPDATE close.rejected_records
SET payload = $withheld, payload_bytes = NULL
WHERE object_type = 'call' AND object_id IN (SELECT id FROM erased_calls) AND payload <> $withheld;
