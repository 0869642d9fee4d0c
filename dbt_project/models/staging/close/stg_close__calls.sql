-- Existing Close calls (deleted ones excluded), with clean, unit-bearing column names.
{{ config(meta={"changed_rows": "calls"}) }}  {#- its tests: macros/incremental_build.sql #}
with calls_source as (

    select * from {{ source('close', 'calls') }}

),

renamed as (

    select
        id as call_id,
        organization_id,
        lead_id,
        contact_id,
        user_id,
        user_name,
        created_by as created_by_user_id,
        created_by_name,
        updated_by as updated_by_user_id,
        updated_by_name,
        users as participant_user_ids,
        date_created as created_at,
        date_updated as updated_at,
        activity_at,
        status,
        "source",
        direction,
        call_method,
        disposition,
        duration as duration_seconds,
        cast(cost as decimal(18, 6)) as cost_cents,
        phone,
        local_phone,
        local_phone_formatted,
        local_country_iso,
        remote_phone,
        remote_phone_formatted,
        remote_country_iso,
        note,
        note_html,
        nullif(outcome_id, '') as outcome_id,
        recording_url,
        voicemail_url,
        voicemail_duration as voicemail_duration_seconds,
        dialer_id,
        dialer_saved_search_id,
        sequence_id,
        sequence_name,
        sequence_subscription_id,
        quality_info,
        conversation_type_id,
        custom_fields,
        coalesce(has_recording_transcript, false) as has_recording_transcript,
        coalesce(has_voicemail_transcript, false) as has_voicemail_transcript,
        recording_summary_text,
        recording_summary_html,
        voicemail_summary_text,
        voicemail_summary_html,
        _loaded_at as loaded_at

    from calls_source
    where _deleted_at is null

)

select * from renamed
