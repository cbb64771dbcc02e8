"""CLI contract: --help everywhere, --json last line, exit 2 with one line on bad input."""
import json
import subprocess
import sys

import pytest

from orchestration.cli import main

COMMANDS = ["data", "export", "profile", "evaluate", "train-teacher", "import-teacher", "finetune", "demo", "ui",
            "prune", "inspect", "benchmark"]


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "orchestration.cli", *args], capture_output=True,
                          text=True, env=env, timeout=600)


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "example" in capsys.readouterr().out


def test_benchmark_refuses_unknown_methods(tmp_path, capsys):
    assert main(["benchmark", "--methods", "marl,magic", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown --methods magic" in err and len(err.splitlines()) == 1


def test_data_list_json(capsys):
    assert main(["data", "list", "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"edges2photos"} <= {d["name"] for d in result["datasets"]}


def test_bad_input_exits_2_with_one_line(tmp_path):
    r = run_cli("profile", str(tmp_path / "missing"))
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("ganprune profile: error: no such export")
    r = run_cli("demo", "--preset", "nope")
    assert r.returncode == 2 and "unknown preset" in r.stderr


def test_unknown_config_key_is_named(tmp_path):
    from orchestration.config import load_preset
    from orchestration.errors import UsageError

    bad = tmp_path / "bad.yaml"
    bad.write_text("resolution: 64\ngenerator: {ngf: 8, widht: 3}\n")
    with pytest.raises(UsageError, match="'widht'"):
        load_preset(str(bad))


def test_malformed_dataset_folder_exits_2_naming_the_file(tmp_path):
    from PIL import Image

    (tmp_path / "facades" / "train").mkdir(parents=True)
    Image.new("RGB", (11, 8)).save(tmp_path / "facades" / "train" / "1.png")
    r = run_cli("data", "check", str(tmp_path / "facades"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "1.png" in r.stderr and "odd" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["finetune", "--ray-workers", "2", "--num-procs", "2"], "--ray-workers and --num-procs are two launchers"),
    (["finetune", "--ray-workers", "2", "--backend", "torch"], "--ray-workers 2 needs --backend deepspeed"),
    (["finetune", "--ray-workers", "3"], "--batch-size 4 (the global batch) is not divisible by --ray-workers 3"),
    (["finetune", "--ray-workers", "-1"], "--ray-workers must be ≥ 1"),
    (["finetune", "--address", "auto"], "--address names the Ray cluster of --ray-workers"),
    (["prune", "--finetune-workers", "2", "--finetune-backend", "torch"],
     "--finetune-workers 2 needs --finetune-backend deepspeed"),
    (["prune", "--method", "ppcd", "--finetune-workers", "2"], "drop --finetune-workers"),
])
def test_ray_train_flags_refused_before_any_work(args, message, tmp_path, capsys):
    """Launcher flags that cannot work are refused before Ray starts or the teacher is read."""
    out = tmp_path / "out"
    if args[0] == "finetune":
        args = args + ["--teacher", str(tmp_path / "no-teacher"), "--spec", str(tmp_path / "no-spec.json")]
    assert main(args + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith(f"ganprune {args[0]}: error:"), err
    assert not out.exists()


@pytest.mark.parametrize("argv, says", [(["prune", "--foo"], "unrecognized arguments: --foo"),
                                        (["finetune", "--objective", "magic"], "invalid choice: 'magic'"),
                                        (["bogus"], "invalid choice: 'bogus'")])
def test_argument_syntax_errors_are_one_line_exit_2(argv, says, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and says in err[0] and err[0].endswith("--help")


def test_prune_refuses_search_budget_flags_of_other_methods(tmp_path, capsys):
    """--evaluations is random search's budget; --search-from a finished marl run's search: refused
    for other methods (and a folder without a search) before any teacher is loaded."""
    base = ["prune", "--out", str(tmp_path / "p"), "--tracking-uri", "sqlite:///" + str(tmp_path / "m.db")]
    assert main(base + ["--method", "marl", "--evaluations", "10"]) == 2
    assert "--evaluations" in capsys.readouterr().err
    assert main(base + ["--method", "marl-greedy", "--search-from", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--search-from" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists()
