-- The warehouse contract: tables that users query from notebooks and that dbt reads as sources.
-- Names and types are stable; new columns are only ever added.
CREATE SCHEMA IF NOT EXISTS close;

-- One row per call id ever seen. Every documented Call field under its API name, typed.
-- The typed columns are read from `_raw`. Every writer that changes one changes `_raw` and
-- `_raw_hash` (the personal-data police, an erasure) or numbers the change (`_change_seq`): the
-- read-only copy compares calls by these columns alone (core/publish.py, _hashed_rows).
CREATE TABLE IF NOT EXISTS close.calls (
    id                        VARCHAR NOT NULL,
    _type                     VARCHAR,
    organization_id           VARCHAR,
    lead_id                   VARCHAR,
    contact_id                VARCHAR,
    user_id                   VARCHAR,
    user_name                 VARCHAR,
    created_by                VARCHAR,
    created_by_name           VARCHAR,
    updated_by                VARCHAR,
    updated_by_name           VARCHAR,
    users                     VARCHAR[],
    date_created              TIMESTAMPTZ,
    date_updated              TIMESTAMPTZ,
    activity_at               TIMESTAMPTZ,
    status                    VARCHAR,
    source                    VARCHAR,
    direction                 VARCHAR,
    call_method               VARCHAR,
    disposition               VARCHAR,
    duration                  INTEGER,
    cost                      DECIMAL(18, 6),
    phone                     VARCHAR,
    local_phone               VARCHAR,
    local_phone_formatted     VARCHAR,
    local_country_iso         VARCHAR,
    remote_phone              VARCHAR,
    remote_phone_formatted    VARCHAR,
    remote_country_iso        VARCHAR,
    note                      VARCHAR USING COMPRESSION zstd,
    note_html                 VARCHAR USING COMPRESSION zstd,
    outcome_id                VARCHAR,
    recording_url             VARCHAR,
    voicemail_url             VARCHAR,
    voicemail_duration        INTEGER,
    dialer_id                 VARCHAR,
    dialer_saved_search_id    VARCHAR,
    sequence_id               VARCHAR,
    sequence_name             VARCHAR,
    sequence_subscription_id  VARCHAR,
    quality_info              VARCHAR,
    conversation_type_id      VARCHAR,
    custom_fields             JSON,
    has_recording_transcript  BOOLEAN,
    has_voicemail_transcript  BOOLEAN,
    recording_summary_text    VARCHAR,
    recording_summary_html    VARCHAR,
    voicemail_summary_text    VARCHAR,
    voicemail_summary_html    VARCHAR,
    _raw                      JSON USING COMPRESSION zstd,   -- ~2 KB a call: 10x smaller on disk
    _loaded_at                TIMESTAMPTZ NOT NULL,
    _deleted_at               TIMESTAMPTZ,
    _raw_hash                 UBIGINT,            -- internal: hash(_raw), to find changed calls cheaply
    _change_seq               BIGINT              -- see close.call_change_counter
);

-- Numbers every insert, update and soft delete of a call (close.calls._change_seq), so the
-- layers above build from the calls changed since their last build: the last number given (one
-- row). Each landing takes the next in its own transaction (warehouse.next_change_seq); two
-- writers that land at once both update this row, so in a DuckLake the second one's commit
-- fails instead of showing calls twice.
CREATE TABLE IF NOT EXISTS close.call_change_counter (
    last_change_seq  BIGINT NOT NULL
);

-- One row per transcript utterance of a call that exists in Close.
CREATE TABLE IF NOT EXISTS close.call_transcript_utterances (
    call_id          VARCHAR NOT NULL,
    transcript_type  VARCHAR NOT NULL,   -- 'recording' | 'voicemail'
    utterance_index  INTEGER NOT NULL,   -- 0-based position in the transcript
    speaker_label    VARCHAR,
    speaker_side     VARCHAR,            -- 'contact' | 'close-user'
    start_seconds    DOUBLE,
    end_seconds      DOUBLE,
    text             VARCHAR,
    _loaded_at       TIMESTAMPTZ NOT NULL,
    is_question      BOOLEAN             -- the text contains '?': kept when the text is dropped
);

CREATE TABLE IF NOT EXISTS close.outcomes (
    id               VARCHAR NOT NULL,
    organization_id  VARCHAR,
    name             VARCHAR,
    description      VARCHAR,
    type             VARCHAR,
    applies_to       VARCHAR[],
    date_created     TIMESTAMPTZ,
    date_updated     TIMESTAMPTZ,
    created_by       VARCHAR,
    updated_by       VARCHAR,
    _raw             JSON,
    _loaded_at       TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS close.users (
    id               VARCHAR NOT NULL,
    email            VARCHAR,
    first_name       VARCHAR,
    last_name        VARCHAR,
    image            VARCHAR,
    date_created     TIMESTAMPTZ,
    date_updated     TIMESTAMPTZ,
    _raw             JSON,
    _loaded_at       TIMESTAMPTZ NOT NULL
);

-- Records the landing could not type: kept with the reason and the payload as received.
CREATE TABLE IF NOT EXISTS close.rejected_records (
    run_id       VARCHAR NOT NULL,
    object_type  VARCHAR NOT NULL,
    object_id    VARCHAR,
    reason       VARCHAR NOT NULL,
    payload      VARCHAR NOT NULL,
    rejected_at  TIMESTAMPTZ NOT NULL
);

-- One row per committed sync run; the newest row's high_water_mark_after is the cursor.
CREATE TABLE IF NOT EXISTS close.sync_state (
    run_id                  VARCHAR NOT NULL,
    mode                    VARCHAR NOT NULL,   -- 'backfill' | 'incremental' | 'reconcile'
    started_at              TIMESTAMPTZ NOT NULL,
    finished_at             TIMESTAMPTZ NOT NULL,
    high_water_mark_before  TIMESTAMPTZ,
    high_water_mark_after   TIMESTAMPTZ,
    calls_inserted          BIGINT NOT NULL,
    calls_updated           BIGINT NOT NULL,
    calls_deleted           BIGINT NOT NULL,
    utterances_written      BIGINT NOT NULL,
    records_rejected        BIGINT NOT NULL,
    requests                BIGINT NOT NULL,
    rate_limited            BIGINT NOT NULL,
    retries                 BIGINT NOT NULL,
    seconds_waited          DOUBLE NOT NULL
);

-- Internal: the plan of an unfinished date_created walk, so an interrupted backfill resumes
-- where it stopped. A window is marked done in the same transaction as its last rows.
CREATE TABLE IF NOT EXISTS close.sync_windows (
    run_id            VARCHAR NOT NULL,
    mode              VARCHAR NOT NULL,
    started_at        TIMESTAMPTZ NOT NULL,
    high_water_mark   TIMESTAMPTZ NOT NULL,   -- the mark the walk sets when it completes
    window_start      TIMESTAMPTZ NOT NULL,
    window_end        TIMESTAMPTZ NOT NULL,
    done              BOOLEAN NOT NULL
);

-- Internal: ids a walk has seen, to find the calls that no longer exist when it completes.
CREATE TABLE IF NOT EXISTS close.sync_seen_ids (
    run_id  VARCHAR NOT NULL,
    id      VARCHAR NOT NULL
);

-- Internal: the landed totals of an unfinished walk (it may take several processes to finish),
-- so that its close.sync_state row counts everything it landed.
CREATE TABLE IF NOT EXISTS close.sync_walk_progress (
    run_id              VARCHAR NOT NULL,
    loaded_since        TIMESTAMPTZ NOT NULL,   -- rows loaded since then are the walk's own
    calls_inserted      BIGINT NOT NULL,
    calls_updated       BIGINT NOT NULL,
    utterances_written  BIGINT NOT NULL,
    records_rejected    BIGINT NOT NULL,
    records_repaired    BIGINT NOT NULL,
    drift_calls         BIGINT NOT NULL
);

-- Internal: hash(id) of every call a backfill has landed, so that a batch holding none of them
-- is appended without probing close.calls by id (a scan of 8 bytes a row instead of an id).
CREATE TABLE IF NOT EXISTS close.sync_walk_hashes (
    id_hash  UBIGINT NOT NULL
);

-- Internal: Event Log entries an incremental run has applied (committed with what it fetched),
-- so that re-reading them in the next run's overlap costs no fetch. Pruned past the overlap.
CREATE TABLE IF NOT EXISTS close.sync_applied_events (
    event_id      VARCHAR NOT NULL,
    date_updated  VARCHAR NOT NULL,       -- as the Event Log wrote it: a consolidated event moves it
    updated_at    TIMESTAMPTZ NOT NULL    -- the same, parsed: kept while a re-scan can read it
);

-- The personal_data policy the stored rows were last written with (one row; see
-- core/personal_data.py): a run with a stricter one rewrites them first.
CREATE TABLE IF NOT EXISTS close.personal_data_policy (
    phone_numbers    VARCHAR NOT NULL,   -- 'keep' | 'hash' | 'drop'
    notes            VARCHAR NOT NULL,   -- 'keep' | 'drop'
    transcript_text  VARCHAR NOT NULL,
    summaries        VARCHAR NOT NULL,
    recording_urls   VARCHAR NOT NULL,
    key_fingerprint  VARCHAR,            -- tells hash keys apart, does not reveal them
    applied_at       TIMESTAMPTZ NOT NULL
);

-- Whose warehouse this is: the Close organization its first run synced (one row). Every run
-- checks, before it writes anything, that its API answers for this organization.
CREATE TABLE IF NOT EXISTS close.warehouse_identity (
    organization_id    VARCHAR NOT NULL,
    organization_name  VARCHAR,
    is_sandbox         BOOLEAN NOT NULL,   -- the embedded sandbox Close API (a run without a key)
    api_base_url       VARCHAR,            -- the API it was synced from (null: the embedded sandbox)
    first_run_at       TIMESTAMPTZ NOT NULL
);

-- Columns added after the first release. The schema is add-only, and CREATE TABLE IF NOT EXISTS
-- leaves an existing table as it is, so each added column is also added here.
ALTER TABLE close.rejected_records ADD COLUMN IF NOT EXISTS payload_bytes BLOB;  -- as received, when not JSON text
ALTER TABLE close.sync_state ADD COLUMN IF NOT EXISTS records_repaired BIGINT;   -- lone surrogates replaced by U+FFFD
ALTER TABLE close.sync_state ADD COLUMN IF NOT EXISTS drift_calls BIGINT;        -- reconcile: changes the incremental missed
ALTER TABLE close.sync_windows ADD COLUMN IF NOT EXISTS landed_down_to TIMESTAMPTZ;  -- every call newer than this has landed
ALTER TABLE close.call_transcript_utterances ADD COLUMN IF NOT EXISTS is_question BOOLEAN;  -- kept when the text is dropped
ALTER TABLE close.calls ADD COLUMN IF NOT EXISTS _change_seq BIGINT;

-- The counter starts above the numbers already given (by a sequence, in an earlier release).
INSERT INTO close.call_change_counter
SELECT last_given FROM (SELECT coalesce(max(_change_seq), 0) AS last_given FROM close.calls)
WHERE NOT EXISTS (SELECT 1 FROM close.call_change_counter);
