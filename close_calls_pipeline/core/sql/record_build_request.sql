-- The plan of this run's build (core/build_plan.py, request): its fingerprint for the build to
-- record, its mode and reason for the steps after it. Emptied and written again, never created
-- again: in a DuckLake every table created stays in the catalog until maintenance expires its
-- snapshots, and every later statement reads that catalog (docs/lake.md).
CREATE SCHEMA IF NOT EXISTS build_state;
-- The dbt project creates it with its first column when dbt runs before the pipeline ever did.
CREATE TABLE IF NOT EXISTS build_state.request (fingerprint VARCHAR);
ALTER TABLE build_state.request ADD COLUMN IF NOT EXISTS mode VARCHAR;
ALTER TABLE build_state.request ADD COLUMN IF NOT EXISTS reason VARCHAR;
ALTER TABLE build_state.request ADD COLUMN IF NOT EXISTS change_seq BIGINT;
DELETE FROM build_state.request;
INSERT INTO build_state.request (fingerprint, mode, reason, change_seq)
SELECT $fingerprint, $mode, $reason, (SELECT max(_change_seq) FROM close.calls);
