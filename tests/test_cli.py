"""`python -m lora_mini finetune|info` end to end on the tiny model: outputs, resume, Ctrl-C, help."""
import argparse
import json

import pytest
import torch

from lora_mini.__main__ import build_parser, join_negative_numbers, main
from lora_mini.lab.config import ConfigError, parse_targets

TINY = ["finetune", "--model", "tiny", "--device", "cpu", "--no-progress", "--digits", "1,1", "--n-train", "40",
        "--n-test", "6", "--batch-size", "8", "--warmup", "1", "--lr", "1e-2", "--eval-every", "0", "--no-merge-check"]


def run(tmp_path, *extra, out="out"):
    return main([*TINY, "--out", str(tmp_path / out), *extra])


def results(tmp_path, out="out"):
    return json.loads((tmp_path / out / "results.json").read_text())


def test_help_shows_every_default_and_every_option_has_help(capsys):
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("finetune", "info"):
        p = sub.choices[name]
        for action in p._actions:
            assert action.help, (name, action.dest)
        text = p.format_help()
        assert "(default: 16)" in text                      # --rank
    text = sub.choices["finetune"].format_help()
    assert "--preset" in text and "cpu-quick 48, gpu 300" in text    # the preset's steps


def test_one_target_parser_for_finetune_and_info():
    assert parse_targets("q_proj") == ["q_proj"]                    # finetune used to read it as a regex
    assert parse_targets("q_proj, v_proj") == ["q_proj", "v_proj"]
    assert parse_targets("all-linear") == "all-linear"
    assert parse_targets(r".*\.mlp\..*") == r".*\.mlp\..*"
    with pytest.raises(ConfigError, match="empty name"):
        parse_targets("q_proj,")


def test_negative_numbers_are_values():
    assert join_negative_numbers(["--lr", "-1e-3", "--steps", "5"]) == ["--lr=-1e-3", "--steps", "5"]
    assert join_negative_numbers(["--alpha", "-inf"]) == ["--alpha=-inf"]


def test_finetune_targets_q_proj_trains_only_q_proj(tmp_path):
    assert run(tmp_path, "--steps", "2", "--targets", "q_proj") == 0
    cfg = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())   # PEFT format
    assert sorted(cfg["target_modules"]) == ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]
    assert results(tmp_path)["config"]["lora"]["targets"] == ["q_proj"]


def test_rank_larger_than_the_layer_is_refused(tmp_path, capsys):
    assert run(tmp_path, "--steps", "2", "--rank", "5000") == 2
    err = capsys.readouterr().err
    assert "--rank 5000 is larger than layer" in err and not (tmp_path / "out").exists()


def test_full_finetuning_saves_the_trained_weights(tmp_path):
    from safetensors.torch import load_file
    assert run(tmp_path, "--steps", "3", "--method", "full", "--lr", "1e-3") == 0
    w = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert "model.layers.0.self_attn.q_proj.weight" in w and results(tmp_path)["model_file"].endswith("model.safetensors")


def test_resume_refuses_other_settings_and_records_more_steps(tmp_path, capsys):
    assert run(tmp_path, "--steps", "4", "--checkpoint-every", "2") == 0
    assert run(tmp_path, "--steps", "4", "--checkpoint-every", "2", "--lr", "2e-2", "--resume") == 2
    assert "different train.lr" in capsys.readouterr().err
    assert run(tmp_path, "--steps", "6", "--checkpoint-every", "2", "--resume") == 0
    res = results(tmp_path)
    assert len(res["history"]) == 6 and res["config"]["train"]["steps"] == 6
    change = res["changes"][0]
    assert change["at_step"] == 4 and {"setting": "train.steps", "was": 4, "now": 6} in change["changes"]


def test_a_complete_leftover_checkpoint_tmp_is_recovered(tmp_path):
    assert run(tmp_path, "--steps", "4", "--checkpoint-every", "2", out="a") == 0
    (tmp_path / "a" / "checkpoint").rename(tmp_path / "a" / "checkpoint.tmp")   # killed between the renames
    assert run(tmp_path, "--steps", "6", "--checkpoint-every", "2", "--resume", out="a") == 0
    res = results(tmp_path, "a")
    assert res["changes"][0]["at_step"] == 4 and (tmp_path / "a" / "checkpoint").is_dir()


def test_ctrl_c_writes_a_checkpoint_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from lora_mini.lab import trainer
    calls = {"n": 0}
    real = trainer.Trainer.step_fn

    def step_then_interrupt(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, batch)
    monkeypatch.setattr(trainer.Trainer, "step_fn", step_then_interrupt)
    assert run(tmp_path, "--steps", "6") == 130
    err = capsys.readouterr().err
    assert "interrupted at step 2" in err and "--resume" in err and "Traceback" not in err
    state = json.loads((tmp_path / "out" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2 and not (tmp_path / "out" / ".lock").exists()
    monkeypatch.undo()
    assert run(tmp_path, "--steps", "6", "--resume") == 0 and len(results(tmp_path)["history"]) == 6


def test_a_non_finite_loss_stops_with_a_clear_message(tmp_path, capsys, monkeypatch):
    from lora_mini.lab import trainer
    real = trainer.Trainer.step_fn
    monkeypatch.setattr(trainer.Trainer, "step_fn", lambda self, b: real(self, b) * float("nan"))
    assert run(tmp_path, "--steps", "3") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the loss became nan at step 1" in err[0] and "--lr" in err[0]
    assert not (tmp_path / "out" / "adapter").exists() and not (tmp_path / "out" / "results.json").exists()


def test_info_merge_check_seeds_and_uses_the_models_noise():
    from lora_mini import apply_lora, tiny_model
    from lora_mini.lab.info import merge_check
    ids = torch.randint(0, 256, (1, 12))
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = apply_lora(tiny_model("llama"), ["q_proj"], r=4, alpha=8)
        runs.append(merge_check(m, ids, seed=0))
    assert runs[0] == runs[1] and runs[0]["ok"] and runs[0]["tolerance"] > 0


def test_own_data_trains_and_logs_validation_loss(tmp_path):
    data = [f"data/sample_{s}.jsonl" for s in ("train", "val")]
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    code = main(["finetune", "--model", "tiny", "--device", "cpu", "--no-progress", "--data", str(root / data[0]),
                 "--val", str(root / data[1]), "--steps", "6", "--batch-size", "4", "--warmup", "1",
                 "--eval-every", "3", "--lr", "1e-2", "--out", str(tmp_path / "out")])
    assert code == 0
    res = results(tmp_path)
    losses = [e["val_loss"] for e in res["evals"]]
    assert [e["step"] for e in res["evals"]] == [0, 3, 6] and losses[-1] < losses[0]
    assert res["data"]["train"] > 0 and res["config"]["data"]["path"].endswith("sample_train.jsonl")
    assert res["replies_before"]["n"] == res["replies_after"]["n"] > 0


def test_bad_data_fails_before_loading_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}\n{oops\n')
    code = main(["finetune", "--device", "cpu", "--data", str(bad), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"{bad}:2" in err[0] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("targets,words", [("nonexistent", "its linear layers are down_proj, gate_proj"),
                                           ("q_proj,v_prj", "did you mean v_proj")])
def test_every_target_name_must_match_and_suggestions_are_layer_names(targets, words, tmp_path, capsys):
    assert run(tmp_path, "--steps", "2", "--targets", targets) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "'0'" not in err[0], err
    assert not (tmp_path / "out").exists()                  # nothing written


def test_beyond_command_is_listed_and_every_option_has_help():
    parser, available = build_parser()
    assert "beyond" in available
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.choices["beyond"]
    assert all(action.help for action in p._actions), [a.dest for a in p._actions if not a.help]
    assert p.description.startswith("chapter 8's runs") and "--parts" in p.format_help()


def test_fused_kernels_on_cpu_fail_before_loading(tmp_path, capsys, monkeypatch):
    from lora_mini.lab import commands
    monkeypatch.setattr(commands, "load_base", lambda *a, **k: pytest.fail("the model must not load"))
    assert run(tmp_path, "--steps", "2", "--kernels", "liger") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--kernels liger" in err[0] and "--device cuda" in err[0], err
    assert not (tmp_path / "out").exists()
