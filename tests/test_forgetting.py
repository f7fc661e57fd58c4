"""python -m lora_mini forgetting: the record of a tiny run, the stop at the target accuracy, the budget,
bad options refused before any work, and the held-out text blocks chapter 7 scores."""
import json
import math

import pytest
import torch

from lora_mini.__main__ import main as cli
from lora_mini.lab import forgetting

TINY = ["--model", "tiny", "--device", "cpu", "--preset", "cpu-quick", "--digits", "1,1", "--n-train", "40",
        "--n-test", "8", "--batch-size", "8", "--lr", "1e-2", "--text-files", "2", "--text-block-len", "32",
        "--text-blocks", "4", "--chat-max-new", "6"]


def run(tmp_path, *extra, name="r.json"):
    out = tmp_path / name
    assert cli(["forgetting", *TINY, "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_tiny_run_records_the_whole_curve(tmp_path):
    rec = run(tmp_path, "--method", "lora", "--rank", "4", "--alpha", "8", "--seed", "1", "--max-steps", "4",
              "--eval-every", "2")
    assert rec["finished"] and rec["stopped"] == "max_steps" and rec["reached_at_step"] is None
    assert [p["step"] for p in rec["curve"]] == [0, 2, 4] and rec["steps"] == 4 and len(rec["history"]) == 4
    for p in rec["curve"]:
        assert 0 <= p["exact_match"] <= 1 and math.isfinite(p["text_loss"]) and p["chat_loglik"] < 0
    base, last = rec["curve"][0], rec["curve"][-1]
    assert rec["forgetting"]["text_loss_increase"] == last["text_loss"] - base["text_loss"]
    assert rec["forgetting"]["chat_loglik_drop"] == base["chat_loglik"] - last["chat_loglik"]
    assert last["chat_loglik"] != base["chat_loglik"]                 # training moved the model
    ft = rec["config"]["finetune"]
    assert (ft["lora"]["rank"], ft["train"]["seed"], ft["train"]["steps"], ft["task"]["digits"]) == (4, 1, 4, [1, 1])
    assert (rec["method"], rec["rank"], rec["alpha"], rec["lr"], rec["seed"], rec["target_acc"]) == \
        ("lora", 4, 8.0, 1e-2, 1, 0.9)
    assert rec["command"].startswith("python -m lora_mini forgetting --model tiny") and "--seed 1" in rec["command"]
    assert rec["device"] == "cpu" and rec["torch"] == torch.__version__ and "code_version" in rec
    assert len(rec["chat_prompts"]) == len(forgetting.CHAT_PROMPTS) == len(rec["base_replies"]) == 16
    assert rec["text"]["blocks"] == 4 and rec["trainable_params"] > 0


def test_training_stops_at_the_first_evaluation_that_reaches_the_target(tmp_path, monkeypatch):
    """The tiny model cannot add, so its scores are scripted; everything else is the real run."""
    scores = iter([0.0, 0.5, 0.92, 1.0, 1.0])
    monkeypatch.setattr(forgetting, "task_accuracy", lambda *a: next(scores))
    rec = run(tmp_path, "--method", "full", "--max-steps", "10", "--eval-every", "2", "--target-acc", "0.9")
    assert rec["stopped"] == "target" and rec["reached_at_step"] == 4 and rec["steps"] == 4
    assert [p["exact_match"] for p in rec["curve"]] == [0.0, 0.5, 0.92] and len(rec["history"]) == 4
    assert rec["rank"] is None and rec["final"] == rec["curve"][-1] and rec["finished"]


def test_a_budget_too_small_to_train_still_writes_the_record(tmp_path):
    rec = run(tmp_path, "--max-steps", "4", "--eval-every", "2", "--budget-s", "0.01")
    assert rec["finished"] and rec["stopped"] == "budget" and rec["steps"] == 0 and len(rec["curve"]) == 1


@pytest.mark.parametrize("extra, words", [
    (["--target-acc", "1.5"], "--target-acc must be a number in (0, 1]"),
    (["--target-acc", "0"], "--target-acc must be a number in (0, 1]"),
    (["--eval-every", "0"], "--eval-every must be a positive integer"),
    (["--max-steps", "0"], "--max-steps must be a positive integer"),
    (["--text-blocks", "0"], "--text-blocks must be a positive integer"),
    (["--rank", "0"], "--rank must be a positive integer"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, monkeypatch, capsys, extra, words):
    monkeypatch.setattr(forgetting, "run_forgetting", lambda *a: pytest.fail("work started"))
    assert cli(["forgetting", *TINY, "--out", str(tmp_path / "r.json"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and not (tmp_path / "r.json").exists()


def test_an_existing_record_is_kept_unless_overwrite(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(forgetting, "run_forgetting", lambda *a: pytest.fail("work started"))
    (tmp_path / "r.json").write_text("keep me")
    assert cli(["forgetting", *TINY, "--out", str(tmp_path / "r.json")]) == 2
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "r.json").read_text() == "keep me"
    assert cli(["forgetting", *TINY, "--out", str(tmp_path / "r.txt")]) == 2
    assert "must name a .json file" in capsys.readouterr().err


def test_the_first_files_held_out_blocks_are_those_of_more_files():
    """Why --text-files 60 scores chapter 7's blocks: the held-out stream of the first n files is a
    prefix of the stream of more files (bytes here, SmolLM2's tokens on the GPU)."""
    from lora_mini.lab.corpus import build_corpus, to_blocks
    few, more = build_corpus(None, max_files=2)["heldout"], build_corpus(None, max_files=3)["heldout"]
    assert len(more) > len(few) and torch.equal(more[:len(few)], few)
    n = len(few) // 64
    assert torch.equal(to_blocks(few, 64)[:n], to_blocks(more, 64)[:n])


def fake(method, seed, text, chat, em=(0.1, 0.6, 0.95), rank=16):
    """A record as run_forgetting writes it, with a made-up curve (step 0 is the base)."""
    rec = {"method": method, "rank": rank if method == "lora" else None, "seed": seed, "lr": 1e-3,
           "target_acc": 0.9, "finished": True,
           "curve": [{"step": 10 * i, "exact_match": e, "text_loss": 2.0 + t, "chat_loglik": -0.6 - c}
                     for i, (e, t, c) in enumerate(zip(em, text, chat))]}
    forgetting.summarize(rec)
    return rec


def test_matched_accuracy_and_the_verdict_rule(tmp_path):
    lora = [fake("lora", s, (0, 0.01, 0.02 + 0.002 * s), (0, 0.1, 0.2)) for s in range(3)]
    full = [fake("full", s, (0, 0.05, 0.10 + 0.002 * s), (0, 0.1, 0.2 + 0.01 * s)) for s in range(3)]
    late = fake("lora", 0, (0, 0.3, 0.5), (0, 0, 0), em=(0.1, 0.5, 0.7), rank=256)    # never reaches 90%
    for i, r in enumerate(lora + full + [late]):
        (tmp_path / f"{i}.json").write_text(json.dumps(r))
    (tmp_path / "partial.json").write_text(json.dumps({**lora[0], "finished": False}))
    recs = forgetting.load_records(tmp_path)
    assert len(recs) == 7 and [forgetting.label(r) for r in recs[:4]] == ["LoRA r=16"] * 3 + ["LoRA r=256"]
    m = forgetting.matched(recs)
    assert m["LoRA r=16"]["step"]["values"] == [20, 20, 20] and m["LoRA r=256"]["reached"] == []
    assert m["LoRA r=16"]["text_loss_increase"]["mean"] == pytest.approx(0.022)
    assert m["full FT"]["chat_loglik_drop"]["values"] == pytest.approx([0.2, 0.21, 0.22])
    assert forgetting.verdict(m["LoRA r=16"], m["full FT"], "text_loss_increase") == "supported"
    assert forgetting.verdict(m["full FT"], m["LoRA r=16"], "text_loss_increase") == "contradicted"
    assert forgetting.verdict(m["LoRA r=16"], m["full FT"], "chat_loglik_drop") == "inconclusive at this scale"
    assert forgetting.verdict(m["LoRA r=256"], m["full FT"], "text_loss_increase") == "inconclusive at this scale"
    inc = "inconclusive at this scale"
    assert forgetting.verdicts(m) == {("LoRA r=16", "text_loss_increase"): "supported", ("LoRA r=16", "chat_loglik_drop"): inc,
                                      ("LoRA r=256", "text_loss_increase"): inc, ("LoRA r=256", "chat_loglik_drop"): inc}
    with pytest.raises(KeyError, match="no 'full FT' runs"):
        forgetting.verdicts({"LoRA r=16": m["LoRA r=16"]})
    rows = forgetting.table(m).splitlines()
    assert len(rows) == 4 and rows[1].startswith("LoRA r=16") and "3/3 seeds" in rows[1] and "0.02 ± 0.00" in rows[1]
    assert "0/1 seeds" in rows[2] and "—" in rows[2] and "0.10 ± 0.00" in rows[3]
    import matplotlib
    matplotlib.use("Agg")
    axes = forgetting.plot_curves(recs)
    assert len(axes[0].lines) == 7 + 6 + 1 and axes[0].get_legend() is not None     # curves, rings at the target, target line
    assert forgetting.plot_curves(recs, yscale="symlog")[0].get_yscale() == "symlog"
    with pytest.raises(ValueError, match="yscale must be"):
        forgetting.plot_curves(recs, yscale="log")


def test_reading_records_refuses_an_empty_folder_and_mixed_targets(tmp_path):
    with pytest.raises(FileNotFoundError, match="scripts/gpu/forgetting.sh"):
        forgetting.load_records(tmp_path)
    (tmp_path / "a.json").write_text(json.dumps(fake("lora", 0, (0, 0.1, 0.2), (0, 0.1, 0.2))))
    (tmp_path / "b.json").write_text(json.dumps({**fake("full", 0, (0, 0.1, 0.2), (0, 0.1, 0.2)), "target_acc": 0.8}))
    with pytest.raises(ValueError, match="mixes records of target accuracies"):
        forgetting.load_records(tmp_path)
