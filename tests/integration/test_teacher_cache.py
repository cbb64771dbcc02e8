"""A preset teacher whose training was killed resumes from its checkpoint the next time a command
asks for it (orchestration/teacher_cache.py), instead of starting an hour's training again."""
from __future__ import annotations

import json

from orchestration import teacher_cache
from orchestration.config import load_preset
from orchestration.requests import TeacherRequest
from orchestration.teacher import train_teacher


def test_a_killed_teacher_training_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GANPRUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GANPRUNE_DATA", str(tmp_path / "data"))
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    key = f"tiny-edges2photos-12-{teacher_cache._preset_hash(load_preset('tiny'))}"
    final = tmp_path / "cache" / "teachers" / key
    partial = final.parent / f".partial-{key}"
    # what a try killed after its step-6 checkpoint leaves: the partial folder without teacher.json
    train_teacher(TeacherRequest(preset="tiny", data="edges2photos", out=str(partial), steps=6, ckpt_every=6,
                                 backend="torch", quiet=True, tracking_uri=uri))
    (partial / "teacher.json").unlink()
    capsys.readouterr()
    got = teacher_cache.ensure_teacher("tiny", data="edges2photos", steps=12, backend="torch", tracking_uri=uri)
    out = capsys.readouterr().out
    assert got == final and (final / "teacher.json").is_file() and not partial.exists()
    assert "from step 6" in out, out[-500:]
    state = json.loads(sorted((final / "checkpoints").glob("step_*"))[-1].joinpath("trainer_state.json").read_text())
    assert state["step"] == 12
