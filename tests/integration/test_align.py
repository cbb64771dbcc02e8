"""`ganprune prune --align N|auto` (issue #17 item 2; gan/pruning/align.py): any method's found G widths
rounded per group to the kernels' channel block within the same budget, recorded in prune.json and
physically in the export; refused in one line, before any work, where it cannot apply."""
import json

import pytest

from gan import export as gexport
from orchestration.cli import main
from tests.integration.test_bad_input import fails

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("method,budget,extra", [
    ("l1", ["--macs-target", "0.4"], []),
    ("random", ["--latency-target", "0.6", "--latency-threads", "1"], ["--evaluations", "3", "--backend-steps", "1"])])
def test_prune_aligns_the_found_widths(prune_env, method, budget, extra):
    out = prune_env["tmp"] / method
    assert main(["prune", "--method", method, "--teacher", str(prune_env["teacher"]), *budget, "--align", "8",
                 "--finetune-steps", "2", "--finetune-backend", "torch", "--out", str(out),
                 "--tracking-uri", prune_env["uri"], "--quiet", *extra]) == 0
    s = json.loads((out / "prune.json").read_text())
    a = s["align"]
    assert a["block"] == 8 and a["aligned"] and a["cost_after"] <= a["target"] * (1 + 1e-9)
    before, after = a["widths_before"], a["widths_after"]
    g_sizes = {grp.name: grp.size for grp in gexport.load(prune_env["teacher"] / "generator").channel_groups()}
    if method == "l1":  # deterministic: L1's widths were not aligned; rounded after the search
        assert any(before[n] % 8 for n in before) and before != after
    else:  # an env-based search scores aligned candidates only: its pick needs no rounding
        assert before == after
    for n, c in after.items():
        assert c % 8 == 0 or c == before[n] < 8 or c == before[n] == g_sizes[n], (n, c)
    spec = json.loads((out / "best_spec.json").read_text())["generator"]
    assert {n: len(v) for n, v in spec.items()} == after
    g = gexport.load(out / "generator")  # the export is physically at the aligned widths
    assert {grp.name: grp.size for grp in g.channel_groups()} == after
    assert json.loads((out / "request.json").read_text())["align"] == 8


def test_align_refusals_come_before_any_work(prune_env, capsys):
    err = fails(capsys, "prune", "--method", "ppcd", "--teacher", prune_env["teacher"], "--align", "16",
                "--out", prune_env["tmp"] / "ppcd")
    assert "ppcd trains its own pruned generator" in err and "drop --align" in err
    with pytest.raises(SystemExit) as e:  # argparse's check, one line (orchestration.cli._Parser)
        main(["prune", "--method", "l1", "--teacher", str(prune_env["teacher"]), "--align", "zero",
              "--out", str(prune_env["tmp"] / "bad")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--align" in err[0] and "auto or a channel multiple" in err[0]
    err = fails(capsys, "benchmark", "--teacher", prune_env["teacher"], "--methods", "l1,ppcd", "--align", "16",
                "--out", prune_env["tmp"] / "bench")  # every row checked before the first one runs
    assert "--methods ppcd: --align: ppcd trains its own pruned generator" in err
    for name in ("ppcd", "bad", "bench"):
        assert not (prune_env["tmp"] / name).exists()


def test_benchmark_rows_record_the_alignment_and_resume_on_it(prune_env, capsys):
    out = prune_env["tmp"] / "bench-aligned"
    common = ["benchmark", "--teacher", str(prune_env["teacher"]), "--methods", "l1", "--macs-target", "0.4",
              "--finetune-steps", "2", "--finetune-backend", "torch", "--out", str(out), "--tracking-uri",
              prune_env["uri"], "--quiet"]
    assert main([*common, "--align", "8", "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["rows"][0]["align"] == 8 and "aligned to 8-channel blocks" in (out / "benchmark.md").read_text()
    assert main([*common, "--resume"]) == 0  # unaligned now: the row is not kept
    assert "align" not in json.loads((out / "l1" / "seed0" / "row.json").read_text())["row"]
