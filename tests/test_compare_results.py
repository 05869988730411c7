"""benchmarks/compare_results.py: the before/after check of a redesign tells a changed result from a changed time."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("compare_results", ROOT / "benchmarks" / "compare_results.py")
cr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cr)


def write(folder: Path, score: str, seconds: str, loss: float) -> Path:
    (folder / "models" / "m").mkdir(parents=True)
    (folder / "t.csv").write_text(f"method,score,step_seconds\nfull,{score},{seconds}\n")
    (folder / "models" / "m" / "metrics.json").write_text(json.dumps({"loss_curve": [[1, loss]], "seconds": seconds}))
    return folder


def test_times_may_differ_results_may_not(tmp_path, capsys):
    a = cr.fingerprint(write(tmp_path / "a", "0.8", "1.0", 0.5))
    assert cr.compare(a, cr.fingerprint(write(tmp_path / "b", "0.8", "2.5", 0.5))) == 0
    out = capsys.readouterr().out
    assert "t.csv (dropped: step_seconds)" in out and "models/m/metrics.json (dropped: seconds)" in out
    assert "0 different" in out
    assert cr.compare(a, cr.fingerprint(write(tmp_path / "c", "0.8", "1.0", 0.6))) == 1
    assert "different" in capsys.readouterr().out.splitlines()[0]
    assert cr.compare(a, cr.fingerprint(write(tmp_path / "d", "0.7", "1.0", 0.5))) == 1
    assert cr.compare(a, {}) == 1  # a file missing after is a failure too
