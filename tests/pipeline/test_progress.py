"""The progress display: lines with counts and rates, the last state printed exactly once."""

from pipeline.progress import Progress


def test_progress_prints_counts_and_closes_once(capsys):
    progress = Progress("translate", total=10, min_interval=0.0)
    progress.interactive = False
    progress.min_interval = 0.0
    progress.update(4)
    progress.update(6)
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["translate: 4/10", "translate: 10/10"]
    assert lines[-1].endswith("ETA 0s)")


def test_progress_close_prints_a_final_line_when_updates_were_throttled(capsys):
    progress = Progress("ingest", total=3, min_interval=3600.0)
    progress.interactive = False
    progress.min_interval = 3600.0
    progress.update(1)  # first update always prints (no line yet)
    progress.update(2)  # throttled
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["ingest: 1/3", "ingest: 3/3"]
