"""The model cache's resumable builds (gan/cache.py): a killed or failed build leaves its partial
folder for the next try, and a second asker waits for the builder instead of building again."""
from __future__ import annotations

import fcntl
import threading

import pytest

from gan.cache import build_once


def test_a_failed_resumable_build_is_continued_by_the_next_try(tmp_path):
    final = tmp_path / "entry"
    seen = []

    def crash(tmp):
        (tmp / "step_1").mkdir(parents=True)
        raise KeyboardInterrupt  # a killed build

    with pytest.raises(KeyboardInterrupt):
        build_once(final, "done", crash, resumable=True)
    assert (tmp_path / ".partial-entry" / "step_1").is_dir() and not final.exists()

    def finish(tmp):
        seen.append(sorted(p.name for p in tmp.iterdir()))
        (tmp / "done").write_text("1")

    assert build_once(final, "done", finish, resumable=True) is False
    assert seen == [["step_1"]]  # the second try saw the first one's work
    assert (final / "done").is_file() and (final / "step_1").is_dir()
    assert not (tmp_path / ".partial-entry").exists()
    assert build_once(final, "done", finish, resumable=True) is True and len(seen) == 1


def test_a_non_resumable_build_leaves_nothing_behind(tmp_path):
    def crash(tmp):
        tmp.mkdir(parents=True)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        build_once(tmp_path / "entry", "done", crash)
    assert list(tmp_path.iterdir()) == []


def test_a_second_asker_waits_for_the_builder_and_builds_nothing(tmp_path):
    final = tmp_path / "entry"
    built, waited, result = [], threading.Event(), {}
    with open(tmp_path / ".partial-entry.lock", "w") as lock:  # another process is building
        fcntl.flock(lock, fcntl.LOCK_EX)
        t = threading.Thread(target=lambda: result.setdefault(
            "cached", build_once(final, "done", built.append, resumable=True, on_wait=waited.set)))
        t.start()
        assert waited.wait(10)
        final.mkdir()
        (final / "done").write_text("1")  # the builder finishes ...
    t.join(10)  # ... and releases the lock
    assert result == {"cached": True} and built == []
