"""Run directories: atomic JSON writes (a kill mid-write must not break a later --resume)."""
import json

import pytest

from orchestration.rundir import write_json


def test_write_json_replaces_the_file_whole_and_leaves_no_temp(tmp_path):
    path = tmp_path / "history.json"
    write_json(path, [{"iteration": 1}])
    write_json(path, [{"iteration": 1}, {"iteration": 2}])
    assert json.loads(path.read_text()) == [{"iteration": 1}, {"iteration": 2}]
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_a_failed_write_keeps_the_old_content(tmp_path):
    path = tmp_path / "run.json"
    write_json(path, {"parent": "abc"})
    with pytest.raises(TypeError):
        write_json(path, {"parent": object()})  # not serialisable: fails before anything is renamed
    assert json.loads(path.read_text()) == {"parent": "abc"}
