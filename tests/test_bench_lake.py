"""`close-calls bench --scenario lake` end to end at a tiny size: both storage modes against one
sandbox over HTTP, syncs in processes of their own, a reader process in each, the lake's
maintenance. Asserts what the figures rest on (the same calls in both modes, readers that never
fail, a maintained lake), never a timing."""

from __future__ import annotations

from close_calls_pipeline.bench.lake import storage_modes


def test_both_storage_modes_end_with_the_same_calls_and_readers_never_fail(capsys):
    outcomes = storage_modes(300, workers=2, hourly=2, changes_per_hour=20)

    file, lake = outcomes["file"], outcomes["lake"]
    assert file.backfill_calls == lake.backfill_calls == 300
    assert file.changed_calls == lake.changed_calls == 3
    assert file.hourly_runs == lake.hourly_runs == 2
    assert file.failed_hourly_runs == lake.failed_hourly_runs == 0, (
        file.first_hourly_failure or lake.first_hourly_failure
    )
    # The same live calls, at the same versions, after the backfill, the 1% and the hourly runs.
    assert file.live_fingerprint == lake.live_fingerprint
    assert file.live_fingerprint[0] == 300  # each hour created and deleted 2 calls
    for outcome in (file, lake):
        assert outcome.reader.reads > 0
        assert outcome.reader.failures == 0, outcome.reader.first_failure
    # Maintenance with no retention leaves one snapshot and no file awaiting deletion: what the
    # catalog tracks is what is in the data folder.
    files_after, _, snapshots_after = lake.lake_after_maintenance
    assert snapshots_after == 1 < lake.lake_before_maintenance[2]
    assert lake.after_maintenance.files == files_after > 0
    assert "both modes end with 300 live calls, the same ones" in capsys.readouterr().out
