"""The Call object's fields, declared once (docs/close-api.md, "The Call object").

The client requests them by name (`_fields`), the sandbox generates them, the typing
(`records.CALL_FIELD_COLUMNS`) gives each a type, and `tests/test_call_fields.py` checks that the
DDL, the Arrow schema and the dbt source agree with this list.
"""

# Every documented Call field, in Close's order.
DOCUMENTED_CALL_FIELDS: tuple[str, ...] = (
    "_type",
    "id",
    "organization_id",
    "lead_id",
    "contact_id",
    "user_id",
    "user_name",
    "created_by",
    "created_by_name",
    "updated_by",
    "updated_by_name",
    "users",
    "date_created",
    "date_updated",
    "activity_at",
    "status",
    "source",
    "direction",
    "call_method",
    "disposition",
    "duration",
    "cost",
    "phone",
    "local_phone",
    "local_phone_formatted",
    "local_country_iso",
    "remote_phone",
    "remote_phone_formatted",
    "remote_country_iso",
    "note",
    "note_html",
    "outcome_id",
    "recording_url",
    "voicemail_url",
    "voicemail_duration",
    "dialer_id",
    "dialer_saved_search_id",
    "sequence_id",
    "sequence_name",
    "sequence_subscription_id",
    "quality_info",
    "conversation_type_id",
    "custom_fields",
)
# Returned only when named in `_fields`.
TRANSCRIPT_FIELDS: tuple[str, ...] = ("recording_transcript", "voicemail_transcript")
# Undocumented fields seen in the wild: requested too, kept in `_raw`.
UNDOCUMENTED_CALL_FIELDS: tuple[str, ...] = ("has_recording", "date_answered")
