"""Progress off a terminal (logs, CI, Ray, nohup) is plain lines, not carriage returns or silence."""
from gan.progress import progress


def test_off_a_terminal_each_refresh_is_its_own_line(capsys):
    with progress(total=3, desc="work") as bar:
        for i in range(3):
            bar.set_postfix(step=i)  # forces a refresh in tqdm by default: not in a log
            bar.update(1)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("work:") and "0/3" in lines[0]
    assert "3/3" in lines[-1]
    assert len(lines) <= 3  # the first line, at most one refresh in LOG_INTERVAL, the last one


def test_an_iterable_passes_through_and_quiet_prints_nothing(capsys):
    assert list(progress(range(4), desc="items", quiet=True)) == [0, 1, 2, 3]
    assert capsys.readouterr().err == ""
