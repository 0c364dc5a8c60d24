"""The garbage collector during a run: what it skips, how often it runs, and that all is undone after."""

from __future__ import annotations

import gc
import weakref

from flows.collector import YOUNG_THRESHOLD, run_collector


class _Node:
    """An object that can sit in a reference cycle (only the cyclic collector frees those)."""

    def __init__(self) -> None:
        self.me = self


def test_a_run_collects_young_objects_less_often_and_restores_the_pace_after() -> None:
    before = gc.get_threshold()
    with run_collector():
        assert gc.get_threshold() == (max(YOUNG_THRESHOLD, before[0]), *before[1:])
    assert gc.get_threshold() == before


def test_objects_alive_before_a_run_are_skipped_during_it_and_collected_after_it() -> None:
    held = _Node()
    alive = weakref.ref(held)
    frozen_before = gc.get_freeze_count()
    with run_collector():
        assert gc.get_freeze_count() > frozen_before
        del held  # now cyclic garbage, but frozen: a collection during the run does not walk it
        gc.collect()
        assert alive() is not None
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert alive() is None  # thawed with the run's end: nothing leaks in a long-lived process


def test_garbage_made_during_a_run_is_still_collected() -> None:
    with run_collector():
        made = _Node()
        alive = weakref.ref(made)
        del made
        gc.collect()
        assert alive() is None


def test_overlapping_runs_keep_the_settings_until_the_last_one_ends() -> None:
    before = gc.get_threshold()
    first, second = run_collector(), run_collector()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_threshold()[0] == max(YOUNG_THRESHOLD, before[0])
    assert gc.get_freeze_count() > 0
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
