-- The build that just ended failed its data tests (run after it by core/changed_row_tests.py):
-- record it again as not complete, so the next build is a full refresh.
INSERT INTO build_state.builds
SELECT now(), after_seq, through_seq, false, false, (SELECT max(fingerprint) FROM build_state.request)
FROM build_state.current
