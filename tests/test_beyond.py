"""python -m lora_mini beyond (chapter 8's runs): config built once and saved, bad options refused
before any work, a --smoke run on the tiny model, resume, the time budget."""
import json
import time
from pathlib import Path

import pytest

from lora_mini.__main__ import main as cli
from lora_mini.lab import beyond
from lora_mini.lab.beyond import LRS, BeyondConfig, BeyondSettings

FIGURES = Path(__file__).resolve().parents[1] / "figures" / "beyond"


def test_default_settings_are_those_of_the_committed_results():
    """Resuming compares "config" and "lr": the defaults must equal what the GPU files hold."""
    for name in ("methods.json", "multi.json", "overfit.json"):
        saved = json.loads((FIGURES / name).read_text())
        assert saved["config"] == BeyondSettings().to_dict(), name
        assert saved["lr"] == LRS, name
        assert saved["smoke"] is False


def test_config_fills_defaults_and_orders_methods():
    cfg = BeyondConfig(parts="overfit,methods", methods="prompt,lora")
    assert cfg.parts == ("overfit", "methods") and cfg.methods == ("lora", "prompt")   # part 1 keeps its order
    assert cfg.budget_s == beyond.DEFAULT_BUDGET_S and cfg.out == "figures/beyond"
    smoke = BeyondConfig(smoke=True)
    assert smoke.out == "runs/beyond_smoke" and smoke.settings == BeyondSettings.smoke()
    assert smoke.settings.steps < BeyondSettings().steps
    d = smoke.to_dict()
    assert d["settings"]["latency_shapes"]["b1_t8"] == [1, 8] and json.loads(json.dumps(d)) == d


@pytest.mark.parametrize("argv, words", [
    (["--parts", "methods,forgetting"], "--parts must be one of"),
    (["--parts", ""], "--parts must name at least one"),
    (["--methods", "lora,qlora4"], "--methods must be one of"),
    (["--budget-s", "0"], "--budget-s must be a positive number"),
    (["--budget-s", "nan"], "--budget-s must be a positive number"),
    (["--device", "tpu"], "--device must be auto, cpu, cuda"),
    (["--model", " "], "--model needs a name"),
])
def test_bad_options_are_refused_before_any_work(argv, words, monkeypatch, capsys, tmp_path):
    def no_work(*a, **k):
        raise AssertionError("work started despite a bad option")
    monkeypatch.setattr(beyond, "run_beyond", no_work)
    t = time.time()
    assert cli(["beyond", "--out", str(tmp_path / "b"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and words in err and len(err.splitlines()) == 1, err
    assert time.time() - t < 5 and not (tmp_path / "b").exists()


def test_out_that_is_a_file_is_refused_before_loading(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(beyond, "load", lambda run: pytest.fail("model loaded"))
    (tmp_path / "f").write_text("keep me")
    assert cli(["beyond", "--smoke", "--device", "cpu", "--out", str(tmp_path / "f")]) == 2
    assert "--out" in capsys.readouterr().err and (tmp_path / "f").read_text() == "keep me"


def test_missing_gpu_is_refused_before_loading(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(beyond.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(beyond, "load", lambda run: pytest.fail("model loaded"))
    assert cli(["beyond", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_smoke_run_saves_its_config_and_resumes(tmp_path, capsys):
    out = tmp_path / "beyond"
    argv = ["beyond", "--smoke", "--model", "tiny", "--device", "cpu", "--parts", "methods",
            "--methods", "adapter,lora", "--out", str(out)]
    t = time.time()
    assert cli(argv) == 0
    first = time.time() - t
    res = json.loads((out / "methods.json").read_text())
    assert res["config"] == BeyondSettings.smoke().to_dict() and res["lr"] == LRS and res["smoke"] is True
    assert res["beyond"]["parts"] == ["methods"] and res["beyond"]["methods"] == ["lora", "adapter"]
    assert res["beyond"]["model"] == "tiny" and res["beyond"]["out"] == str(out)
    assert res["command"] == "python -m lora_mini beyond " + " ".join(argv[1:]) == res["commands"][0]
    assert [r["method"] for r in res["runs"]] == ["lora", "adapter"] and res["skipped"] == []
    lora, adapter = res["runs"]
    assert lora["trainable"] < lora["total"] and lora["steps"] == BeyondSettings.smoke().steps
    assert len(lora["history"]) >= 1 and 0 <= lora["exact_match"] <= 1 and lora["text_loss"] > 0
    assert "merged_exact_match" in lora and "merged_exact_match" not in adapter   # adapters cannot merge
    assert set(res["base"]["latency_s"]) == set(BeyondSettings.smoke().latency_shapes)
    assert res["text"]["blocks"] == BeyondSettings.smoke().text_blocks
    assert "wrote" in capsys.readouterr().out
    assert first < 60
    # a second call with the same settings runs nothing again and lists both calls
    assert cli(argv) == 0
    again = json.loads((out / "methods.json").read_text())
    assert again["runs"] == res["runs"] and again["base"] == res["base"] and len(again["commands"]) == 2
    # --fresh starts over
    assert cli([*argv[:-4], "--methods", "prompt", "--fresh", "--out", str(out)]) == 0
    redo = json.loads((out / "methods.json").read_text())
    assert [r["method"] for r in redo["runs"]] == ["prompt"] and len(redo["commands"]) == 1


def test_budget_skips_runs_and_says_so(tmp_path):
    cfg = BeyondConfig(smoke=True, model="tiny", device="cpu", parts=("overfit",), budget_s=1.0, out=str(tmp_path))
    written = beyond.run_beyond(cfg)
    res = json.loads((tmp_path / "overfit.json").read_text())
    assert res["runs"] == [] and len(res["skipped"]) == len(beyond.OVERFIT_GRID)
    assert written["overfit.json"]["skipped"] == res["skipped"] and res["budget_s"] == 1.0


def test_module_entry_point_is_the_command(tmp_path):
    """python -m lora_mini.lab.beyond runs the same command line (same errors, exit status 2)."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-m", "lora_mini.lab.beyond", "--parts", "methods,nope", "--out", str(tmp_path / "b")],
                       cwd=root, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().startswith("error: --parts must be one of"), p.stderr
    assert not (tmp_path / "b").exists()


def test_variants_script_passes_its_options_on(tmp_path):
    """scripts/gpu/variants.sh is a few lines that call the command line: options go straight through."""
    import subprocess
    root = Path(__file__).resolve().parents[1]
    text = (root / "scripts" / "gpu" / "variants.sh").read_text()
    assert "lora_mini beyond" in text and "<<" not in text and "SMOKE" not in text
    import os
    import sys
    p = subprocess.run(["bash", "scripts/gpu/variants.sh", "--budget-s", "-1", "--out", str(tmp_path / "b")],
                       cwd=root, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHON": sys.executable})
    assert p.returncode == 2 and "--budget-s must be a positive number" in p.stderr, p.stderr
