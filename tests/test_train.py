"""lora_mini.lab.trainer: the schedule, the answer-only loss, the loop (LoRA and full), checkpoints."""
import copy
import json
import os

import pytest
import torch

from lora_mini import apply_lora, lora_modules, tiny_model
from lora_mini.lab.tasks import IGNORE, batches
from lora_mini.lab.checkpoint import CheckpointError
from lora_mini.lab.trainer import AnswerLoss, lr_factor, train


def toy_data(n=64, seed=0):
    """Prompts of random tokens whose 'answer' is the prompt's first two tokens (learnable)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        p = 4 + i % 3
        prompt = torch.randint(3, 13, (p,), generator=g).tolist()
        answer = prompt[:2] + [2]
        out.append({"input_ids": prompt + answer, "labels": [IGNORE] * p + answer, "prompt_len": p})
    return out


def lora_toy_model(r=8):
    """A tiny llama whose output head can produce confident logits (init std 0.2, not 0.02):
    LoRA cannot change the head or the final norm, and at std 0.02 logits stay below ~1."""
    return apply_lora(tiny_model("llama", initializer_range=0.2), "all-linear", r=r, alpha=2 * r)


def test_schedule_warms_up_then_decays_to_zero():
    f = [lr_factor(s, 100, 10, "cosine") for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == 1.0 and f[10] == 1.0
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and f[-1] < 0.001
    assert lr_factor(99, 100, 0, "linear") == pytest.approx(0.01)
    assert lr_factor(50, 100, 0, "constant") == 1.0
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, 10, 0, "exp")


def test_answer_loss_equals_the_models_own_loss():
    model = tiny_model("llama")
    batch = next(batches(toy_data(8), 8, pad_id=1))
    s, n = AnswerLoss(model)(**batch)
    assert n == sum(len([t for t in r if t != IGNORE]) for r in batch["labels"].tolist())
    ref = model(**batch).loss                      # transformers: mean over labelled tokens
    assert torch.allclose(s / n, ref, atol=1e-5), (s / n, ref)


def test_lora_training_learns_and_touches_only_A_and_B():
    model = lora_toy_model()
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    calls = []
    out = train(model, batches(toy_data(), 16, pad_id=1), steps=60, lr=2e-2, warmup_steps=5,
                eval_fn=lambda m: calls.append(m.training) or {"x": len(calls)}, eval_every=30,
                progress=False)
    losses = [h["loss"] for h in out["history"]]
    assert len(losses) == 60 and [h["step"] for h in out["history"]] == list(range(1, 61))
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, losses
    assert [e["step"] for e in out["evals"]] == [0, 30, 60] and calls == [False] * 3
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert any(m.lora_B.abs().sum() > 0 for m in lora_modules(model).values())
    assert out["tokens"] > 0 and out["tokens_per_s"] > 0 and out["peak_mem_gib"] > 0


def test_full_finetuning_trains_every_parameter():
    model = tiny_model("llama")
    before = copy.deepcopy(model)
    train(model, batches(toy_data(), 8, pad_id=1), steps=3, lr=1e-3, progress=False)
    changed = [not torch.equal(p, q) for p, q in zip(model.parameters(), before.parameters())]
    assert all(changed)


def test_custom_optimizer_groups_follow_the_schedule():
    model = apply_lora(tiny_model("llama"), "all-linear", r=4, alpha=8)
    A = [p for n, p in model.named_parameters() if n.endswith("lora_A")]
    B = [p for n, p in model.named_parameters() if n.endswith("lora_B")]
    opt = torch.optim.AdamW([{"params": A, "lr": 1e-3}, {"params": B, "lr": 1.6e-2}])  # LoRA+
    train(model, batches(toy_data(), 8, pad_id=1), steps=4, lr=1e-3, warmup_steps=2, schedule="constant",
          optimizer=opt, progress=False)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1.6e-2]


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    def run(**kw):
        torch.manual_seed(0)
        m = apply_lora(tiny_model("llama"), "all-linear", r=4, alpha=8)
        out = train(m, batches(toy_data(), 8, seed=1, pad_id=1), steps=8, lr=5e-3, warmup_steps=2,
                    progress=False, **kw)
        return m, out
    full, out_full = run()
    run(checkpoint_dir=tmp_path / "ck", stop_at=5)
    state = json.loads((tmp_path / "ck" / "state.json").read_text())
    assert state["step"] == 5
    resumed, out = run(checkpoint_dir=tmp_path / "ck", resume=True)
    for (n, p), q in zip(full.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), n
    assert [h["loss"] for h in out["history"]] == [h["loss"] for h in out_full["history"]]


def test_errors_name_the_problem(tmp_path):
    model = tiny_model("llama")
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        train(model, iter([]), steps=1, lr=1e-3)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(apply_lora(tiny_model("llama"), "all-linear", 4, 8), iter([]), steps=1, lr=1e-3,
              checkpoint_dir=tmp_path / "none", resume=True)


def test_cli_parses_the_documented_options():
    import argparse
    from lora_mini.lab.commands import add_arguments
    p = argparse.ArgumentParser()
    add_arguments(p)
    a = p.parse_args(["--method", "full", "--rank", "8", "--alpha", "16", "--lr", "1e-4", "--steps", "5",
                      "--batch-size", "4", "--device", "cpu", "--out", "x"])
    assert (a.method, a.rank, a.alpha, a.lr, a.steps, a.batch_size, a.device, a.out) == \
        ("full", 8, 16.0, 1e-4, 5, 4, "cpu", "x")
    d = p.parse_args([])
    assert d.method == "lora" and d.lr is None and d.steps is None and d.device == "auto"


def tiny_chat_model(dtype=torch.float32):
    from lora_mini.lab.tasks import char_tokenizer
    tok = char_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), initializer_range=0.2, pad_token_id=tok.pad_token_id)
    return model.to(dtype), tok


def tiny_job(tmp_path, **settings):
    from lora_mini.lab.finetune import config_from_kwargs
    kw = dict(method="lora", rank=8, alpha=16, lr=1e-2, steps=40, batch_size=8, digits=(1, 1), n_train=40,
              n_test=8, warmup_steps=2, eval_every=20, out=tmp_path)
    return config_from_kwargs("cpu", **{**kw, **settings})


def test_finetune_job_on_the_tiny_model_learns(tmp_path):
    """The whole job (task -> LoRA -> Trainer -> eval -> files) in seconds: the loss falls 3x, and the
    answers, random characters before training, become numbers."""
    from lora_mini.io import load_adapter
    from lora_mini.lab.finetune import run_finetune, summary
    from lora_mini.lab.tasks import AdditionTask, generate
    model, tok = tiny_chat_model()
    test = AdditionTask(digits=(1, 1), system="").make_splits(40, 8)[1]
    untrained = generate(model, tok, test, max_new_tokens=3)
    res = run_finetune(model, tok, tiny_job(tmp_path), progress=False)
    losses = [h["loss"] for h in res["history"]]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 / 3, losses
    assert not all(a.isdigit() for a in untrained), untrained
    assert all(s["model"].isdigit() for s in res["samples"]), res["samples"]
    assert [e["step"] for e in res["evals"]] == [0, 20, 40] and res["exact_match_before"] == 0.0
    assert res["merge_check"]["n_differ"] == 0                      # fp32 on CPU: merging changes nothing
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["lora"]["rank"] == 8 and saved["trainable_params"] == res["trainable_params"]
    assert (tmp_path / "plot.png").is_file() and (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert res["adapter_bytes"] > 0 and "exact match" in summary(res)
    fresh, _ = tiny_chat_model()
    load_adapter(fresh, tmp_path / "adapter")                       # the PEFT-format adapter loads
    assert generate(fresh, tok, test, max_new_tokens=3) == generate(model, tok, test, max_new_tokens=3)


def test_the_merge_check_leaves_W_bit_identical(tmp_path):
    """bf16 W: merging in place and unmerging changed ~9% of W's entries by one rounding (main)."""
    from lora_mini.lab.finetune import run_finetune
    model, tok = tiny_chat_model(torch.bfloat16)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    res = run_finetune(model, tok, tiny_job(tmp_path, steps=6, eval_every=0), progress=False)
    assert "merge_check" in res
    for n, p in model.named_parameters():
        if n in before:                                             # every base weight, not only frozen ones
            assert torch.equal(p, before[n]), n


def test_schedule_and_strategy_policy():
    from lora_mini.lab.trainer import choose_strategy
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert choose_strategy(cpu, torch.float32, "lora") == "eager"
    assert choose_strategy(gpu, torch.bfloat16, "lora") == "cuda_graph"
    assert choose_strategy(gpu, torch.float32, "full") == "eager"          # autocast: not graphed by auto
    assert choose_strategy(gpu, torch.float32, "full", "cuda_graph") == "cuda_graph"   # but when asked (bisect6)
    with pytest.raises(ValueError, match="cuda_graph needs"):
        choose_strategy(gpu, torch.float16, "lora", "cuda_graph")
    assert choose_strategy(gpu, torch.bfloat16, "lora", world_size=2) == "eager"
    assert choose_strategy(cpu, torch.float32, "lora", "compiled") == "compiled"
    with pytest.raises(ValueError, match="cuda_graph needs"):
        choose_strategy(cpu, torch.float32, "lora", "cuda_graph")


def test_fp16_loss_scaling_is_never_graphed():
    from lora_mini.lab.config import TrainConfig
    from lora_mini.lab.trainer import plan_step
    model = tiny_model("llama")                                    # float32 weights: autocast on a GPU
    gpu = torch.device("cuda")                                     # only named: nothing runs on it
    assert plan_step(model, TrainConfig(precision="fp16"), gpu, method="full").strategy == "eager"
    with pytest.raises(ValueError, match="cannot run fp16 loss scaling"):
        plan_step(model, TrainConfig(precision="fp16", strategy="cuda_graph"), gpu, method="full")
    assert plan_step(model, TrainConfig(precision="bf16", strategy="cuda_graph"), gpu, method="full").strategy == "cuda_graph"


def test_budget_stops_and_checkpoints(tmp_path):
    from lora_mini.lab.budget import Budget
    t = [0.0]
    b = Budget(10, clock=lambda: t[0])
    assert b.fits(5) and not b.expired()
    t[0] = 11
    assert b.expired() and not b.fits(1) and b.remaining() == 0
    out = train(lora_toy_model(), batches(toy_data(), 8, pad_id=1), steps=50, lr=1e-3, budget_s=1e-9,
                checkpoint_dir=tmp_path / "ck", progress=False)
    assert out["stopped"] == "budget" and out["steps"] < 50
    assert json.loads((tmp_path / "ck" / "state.json").read_text())["step"] == out["steps"]


@pytest.mark.slow
def test_finetune_job_end_to_end_on_smollm2(smollm, tmp_path):
    from lora_mini.io import load_adapter
    from lora_mini.lab.finetune import finetune
    model, tok = smollm
    res = finetune(copy.deepcopy(model), tok, method="lora", rank=4, alpha=8, lr=2e-3, steps=2, batch_size=4,
                   digits=(2, 2), n_train=40, n_test=4, n_val=4, eval_every=1, out=tmp_path, progress=False)
    assert [e["step"] for e in res["evals"]] == [0, 1, 2] and res["exact_match_before"] == 0.0
    assert res["history"][-1]["loss"] < res["history"][0]["loss"]
    assert res["merge_check"]["n_differ"] == 0
    load_adapter(copy.deepcopy(model), tmp_path / "adapter")       # the adapter loads into a fresh model


def test_cpu_threads_uses_free_cores_or_omp_num_threads(monkeypatch):
    from lora_mini.lab.trainer import cpu_threads
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert cpu_threads() == (os.cpu_count() or 1)                   # idle: every core
    monkeypatch.setattr(os, "getloadavg", lambda: (50.0, 50.0, 50.0))
    assert cpu_threads() == 1                                        # busy: one thread
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads() == 3


def test_plot_run_to_a_file_leaves_the_backend_alone(tmp_path):
    """finetune(out=...) saves its plot; that must not switch a notebook's backend to Agg."""
    import matplotlib
    from lora_mini.lab.finetune import plot_run
    before = matplotlib.get_backend()
    res = {"method": "lora", "lr": 1e-3, "history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}],
           "evals": [{"step": 0, "exact_match": 0.0}, {"step": 2, "exact_match": 0.5}]}
    plot_run(res, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000
    assert matplotlib.get_backend() == before


def test_auto_precision_is_fp16_on_a_gpu_that_only_emulates_bf16():
    """A T4 (sm75) answers is_bf16_supported() True by emulation: 'auto' picked bf16 there."""
    from types import SimpleNamespace
    from unittest import mock
    from lora_mini.lab.trainer import resolve_precision
    for major, want in ((7, "fp16"), (8, "bf16"), (9, "bf16")):
        with mock.patch("torch.cuda.is_available", return_value=True), \
             mock.patch("torch.cuda.current_device", return_value=0), \
             mock.patch("torch.cuda.get_device_properties", return_value=SimpleNamespace(major=major, minor=5)), \
             mock.patch("torch.cuda._check_bf16_tensor_supported", return_value=True):
            assert resolve_precision("auto", "cuda") == want, major


def test_eval_every_0_still_evaluates_at_the_start_and_the_end():
    """eval_every=0 means 'start and end only'; the start evaluation was skipped, so a finetune --data
    run reported its after-training replies as the ones before training."""
    from lora_mini.lab.trainer import train
    model, tok = tiny_chat_model()
    apply_lora(model, "all-linear", r=2, alpha=4)
    ids = torch.randint(4, 50, (2, 6))
    data = iter(lambda: {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}, None)
    calls = []
    res = train(model, data, steps=3, lr=1e-3, eval_fn=lambda m: calls.append(1) or {"x": len(calls)},
                eval_every=0, progress=False)
    assert [e["step"] for e in res["evals"]] == [0, 3]


def test_memory_check_knows_the_low_memory_mode(monkeypatch):
    """--memory low estimates fewer activation bytes; a run that fits only that way is refused with a
    message that names it, and passes with it."""
    from lora_mini.lab import finetune, system
    from lora_mini.lab.config import ConfigError, FinetuneConfig, LoraConfig, TrainConfig
    model = tiny_model("llama", seed=0)

    def cfg(memory):
        return FinetuneConfig(lora=LoraConfig(method="full"),
                              train=TrainConfig(batch_size=16, memory=memory, strategy="eager"))
    monkeypatch.setattr(system, "free_memory_bytes", lambda device: None)
    normal, low = (finetune.memory_check(model, cfg(m), seq=512) for m in ("normal", "low"))
    assert 0 < low["still_needed_bytes"] < normal["still_needed_bytes"]
    free = (low["still_needed_bytes"] + normal["still_needed_bytes"]) // 2
    monkeypatch.setattr(system, "free_memory_bytes", lambda device: free)
    with pytest.raises(ConfigError, match="--memory low"):
        finetune.memory_check(model, cfg("normal"), seq=512)
    assert finetune.memory_check(model, cfg("low"), seq=512)["still_needed_bytes"] <= free


def test_fused_kernels_are_refused_on_cpu_before_any_step():
    """--kernels liger needs a GPU: a clear error before training, the model as it was."""
    from lora_mini.lab.config import ConfigError, TrainConfig
    model = apply_lora(tiny_model("llama"), "all-linear", r=4, alpha=8)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = [{"input_ids": torch.randint(0, 256, (2, 8)), "attention_mask": torch.ones(2, 8, dtype=torch.long),
             "labels": torch.randint(0, 256, (2, 8))}]
    with pytest.raises(ValueError, match="on a GPU.*kernels='plain'"):
        train(model, iter(data * 2), steps=2, batch_size=2, kernels="liger", progress=False)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    with pytest.raises(ConfigError, match="--kernels"):
        TrainConfig(kernels="triton")
