"""A run's stage clock: wall seconds by stage, what no stage covers, and nothing outside a run."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from flows.stages import stage, stage_seconds, timed, timing_run


def test_a_stage_adds_up_its_repeats_and_the_rest_is_other() -> None:
    with timing_run():
        with stage("fetch"):
            time.sleep(0.02)
        time.sleep(0.03)  # in no stage
        with stage("fetch"):
            time.sleep(0.02)
        found = stage_seconds()
    assert set(found) == {"fetch", "other", "total"}
    assert found["fetch"] == pytest.approx(0.04, abs=0.015)
    assert found["other"] == pytest.approx(0.03, abs=0.015)
    assert found["fetch"] + found["other"] == pytest.approx(found["total"], abs=0.002)


def test_timed_counts_each_wait_for_the_next_item_not_the_loop_body() -> None:
    def slow_parts() -> Iterator[int]:
        for part in range(3):
            time.sleep(0.02)
            yield part

    with timing_run():
        parts = []
        for part in timed("compute", slow_parts()):
            with stage("check"):
                time.sleep(0.01)
            parts.append(part)
        found = stage_seconds()
    assert parts == [0, 1, 2]
    assert found["compute"] == pytest.approx(0.06, abs=0.02)
    assert found["check"] == pytest.approx(0.03, abs=0.015)


def test_outside_a_run_stages_only_run_what_they_wrap() -> None:
    with stage("fetch"):
        ran = True
    assert ran and list(timed("compute", [1, 2])) == [1, 2]
    assert stage_seconds() == {}


def test_a_stage_that_raises_still_counts_and_each_run_has_its_own_clock() -> None:
    with timing_run():
        with pytest.raises(ValueError), stage("fetch"):
            time.sleep(0.01)
            raise ValueError("source down")
        with timing_run():  # a run started within another (a flow calling a flow) keeps its own times
            assert stage_seconds()["total"] < 0.01 and "fetch" not in stage_seconds()
        assert stage_seconds()["fetch"] >= 0.01
    assert stage_seconds() == {}
