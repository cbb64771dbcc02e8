"""One typed request (issue #14): ``ganprune prune`` builds one ``PruneRequest`` from its flags,
records it as ``<out>/request.json``, and ``--request FILE`` runs a recorded (or hand-written YAML)
request again with the command line's flags on top; unknown keys are refused in one line, exit 2,
before anything is written."""
import json

import pytest

from orchestration.cli import main
from orchestration.errors import UsageError
from orchestration.requests import PruneRequest


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from tests.teachers import tiny_teacher

    tmp = tmp_path_factory.mktemp("request")
    return tiny_teacher(tmp / "teacher", data_root=tmp / "data", size=32, steps=10)


def _summary(out):
    return json.loads((out / "prune.json").read_text())


def test_a_recorded_request_runs_the_same_prune_again(teacher, tmp_path):
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["prune", "--method", "l1", "--teacher", str(teacher), "--macs-target", "0.3", "--seed", "3",
                 "--finetune-steps", "2", "--finetune-backend", "torch", "--out", str(a), "--tracking-uri", uri,
                 "--quiet"]) == 0
    recorded = json.loads((a / "request.json").read_text())
    assert recorded["method"] == "l1" and recorded["seed"] == 3 and recorded["finetune"]["steps"] == 2
    assert PruneRequest.from_mapping(recorded) == PruneRequest.from_file(a / "request.json")
    assert main(["prune", "--request", str(a / "request.json"), "--out", str(b)]) == 0
    sa, sb = _summary(a), _summary(b)
    assert (sb["method"], sb["seed"], sb["finetune_steps"]) == ("l1", 3, 2)
    assert sb["generator_keep"] == sa["generator_keep"] and sb["fidelity"] == sa["fidelity"]


def test_flags_given_on_the_command_line_override_a_yaml_request(teacher, tmp_path):
    """``--seed 0`` equals the parser's default and still overrides the file's seed 3."""
    req = tmp_path / "req.yaml"
    req.write_text(f"method: uniform\nteacher: {teacher}\nmacs_target: 0.3\nseed: 3\nquiet: true\n"
                   f"finetune: {{steps: 1, backend: torch}}\ntracking_uri: sqlite:///{tmp_path / 'mlflow.db'}\n")
    out = tmp_path / "c"
    assert main(["prune", "--request", str(req), "--seed", "0", "--out", str(out)]) == 0
    recorded = json.loads((out / "request.json").read_text())
    assert (recorded["method"], recorded["seed"], recorded["finetune"]["backend"]) == ("uniform", 0, "torch")


@pytest.mark.parametrize("text, named", [("search: {iteratons: 2}\n", "iteratons"),
                                         ("metod: l1\n", "metod"), ("- 1\n", "expected a mapping"),
                                         ("search: [\n", "not valid")])
def test_a_bad_request_file_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, text, named):
    req = tmp_path / "bad.yaml"
    req.write_text(text)
    out = tmp_path / "out"
    assert main(["prune", "--request", str(req), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and str(req) in err
    assert not out.exists()


def test_the_request_types_refuse_unknown_keys_naming_the_known_ones():
    with pytest.raises(UsageError, match=r"request.finetune: unknown config key 'stepz'; known keys: steps, backend"):
        PruneRequest.from_mapping({"finetune": {"stepz": 3}})
    r = PruneRequest.from_mapping({"search": {"beta": 0.0}, "placement": {"num_env_runners": 2}})
    assert r.search.beta == 0.0 and r.search.iterations is None and r.placement.num_env_runners == 2


def test_no_orchestration_function_takes_more_than_ten_parameters():
    """Settings travel as the typed requests of ``orchestration/requests.py``, not as keyword lists."""
    import ast
    from pathlib import Path

    import orchestration

    wide = []
    for path in Path(orchestration.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + bool(a.vararg) + bool(a.kwarg)
                if n > 10:
                    wide.append(f"{path.name}:{node.name} ({n})")
    assert not wide, wide
