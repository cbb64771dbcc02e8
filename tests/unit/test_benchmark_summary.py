"""The benchmark's statistics and its resume key (orchestration/benchmark.py), on made-up rows."""
import math

from orchestration.benchmark import _same_code, code_version, markdown, parse_seeds, summarize


def _rows():
    psnr = {"marl": [21.9, 21.4, 21.0], "l1": [19.7, 20.3, 19.9], "random": [18.8, 21.3, 21.5]}
    return [{"method": m, "seed": s, "psnr_vs_teacher": v, "macs": 1e6, "params": 10, "macs_ratio": 0.25,
             "latency_ms": 1.0, "search_s": 1.0, "finetune_s": 1.0, "search_evaluations": 45 if m != "l1" else 0}
            for m, vs in psnr.items() for s, v in enumerate(vs)]


def test_paired_differences_are_mean_and_standard_error_over_seeds():
    summary = summarize(_rows())
    d = summary["marl"]["psnr_vs_teacher_minus"]["l1"]
    diffs = [21.9 - 19.7, 21.4 - 20.3, 21.0 - 19.9]
    mean = sum(diffs) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 2)
    assert d["n"] == 3 and math.isclose(d["mean"], mean) and math.isclose(d["se"], std / math.sqrt(3))
    assert "random" in summary["marl"]["psnr_vs_teacher_minus"] and summary["l1"]["psnr_vs_teacher"]["n"] == 3
    assert "l1" not in summary["l1"]["psnr_vs_teacher_minus"]  # no difference to itself
    md = markdown({"preset": "tiny", "macs_target": 0.25, "finetune_steps": 2, "eval_items": 64, "seeds": [0, 1, 2],
                   "rows": _rows(), "summary": summary})
    assert f"{mean:.2f} ± {std / math.sqrt(3):.2f}" in md  # the Δ vs l1 cell


def test_resume_key_is_the_code_not_the_commit():
    v = code_version()
    assert v.startswith("src-") and code_version() == v
    assert _same_code(v, v.split(" ")[0] + " (git 0123456789)") and not _same_code(v, "src-000000000000")
    assert not _same_code(None, v)


def test_seeds_parse():
    assert parse_seeds("0, 1,2") == [0, 1, 2] and parse_seeds([3]) == [3]
