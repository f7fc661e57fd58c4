"""python -m lora_mini bench on a tiny model: JSON shape, ratios, targets, failures recorded."""
import argparse
import json

import pytest
import torch

from lora_mini.lab import bench


def _args(tmp_path, **kw):
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    argv = ["--model", "tiny-llama", "--device", "cpu", "--shapes", "2x16,1x8", "--steps", "1",
            "--warmup", "1", "--rank", "4", "--alpha", "8", "--quiet", "--out", str(tmp_path / "b.json")]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return p.parse_args(argv)


def test_bench_cpu_writes_json_and_plot(tmp_path):
    assert bench.main(_args(tmp_path)) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    assert (tmp_path / "b.png").stat().st_size > 1000
    assert result["command"].startswith("python -m lora_mini bench") and "--shapes 2x16,1x8" in result["command"]
    rows = result["results"]
    assert {(r["method"], r["shape"]) for r in rows} == {(m, s) for m in bench.METHODS for s in ("2x16", "1x8")}
    assert all(r["mode"] == "eager" for r in rows)                   # CPU default: no compile
    liger = [r for r in rows if r["method"] in bench.LIGER]
    assert len(liger) == 2 * 3
    assert all("skipped" in r and ("liger_kernel" in r["skipped"] or "GPU" in r["skipped"]) for r in liger)
    assert result["fused_loss_check"] == [] and all(t["value"] is None for t in result["targets_fused"])
    rows = [r for r in rows if r["method"] not in bench.LIGER]
    for r in rows:
        assert "error" not in r, r
        assert r["step_s"] > 0 and r["tokens_per_s"] > 0 and r["peak_mem_gib"] > 0
        assert r["time_ratio"] > 0 and r["mem_ratio"] > 0
    full = [r for r in rows if r["method"] == "full"]
    assert all(r["time_ratio"] == 1.0 and r["mem_ratio"] == 1.0 for r in full)
    # same model, same inputs, B = 0 at the start: every method starts from the same loss
    for shape in ("2x16", "1x8"):
        losses = {r["method"]: r["loss_first"] for r in rows if r["shape"] == shape}
        assert max(losses.values()) - min(losses.values()) < 1e-3, losses
    # LoRA trains far fewer parameters and so keeps less state than full fine-tuning
    lora = next(r for r in rows if r["method"] == "lora_mini" and r["shape"] == "2x16")
    assert lora["trainable_params"] < full[0]["trainable_params"] / 4
    assert lora["mem_ratio"] < 1.0
    assert {t["metric"] for t in result["targets"]} == {"time_ratio", "mem_ratio"}
    assert all(isinstance(t["met"], bool) for t in result["targets"])


def test_bench_records_failures_and_keeps_going(tmp_path, monkeypatch):
    real = bench.build

    def broken(base, method, *a, **k):
        if method == "peft":
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(base, method, *a, **k)

    monkeypatch.setattr(bench, "build", broken)
    bench.main(_args(tmp_path, shapes="1x8", methods="full,peft,lora_mini"))
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    by = {r["method"]: r for r in rows}
    assert "out of memory" in by["peft"]["error"] and "step_s" not in by["peft"]
    assert by["lora_mini"]["step_s"] > 0 and "time_ratio" in by["lora_mini"]


def test_bench_budget_skips(tmp_path):
    bench.main(_args(tmp_path, shapes="1x8", methods="full,lora_mini", budget_s=1e-6))
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert all("skipped" in r for r in rows)


def test_bad_arguments_are_explained(tmp_path):
    with pytest.raises(ValueError, match="BATCHxSEQ"):
        bench.parse_shapes("16by1024")
    with pytest.raises(ValueError, match="unknown method"):
        bench.main(_args(tmp_path, methods="full,qlora"))


def test_flop_accounting_matches_the_claim():
    """Per d×d matrix: full 6d² FLOPs per token, LoRA 4d² + 12dr; SmolLM2 at r=16 ≈ 0.72 on linears."""
    from types import SimpleNamespace
    cfg = SimpleNamespace(num_hidden_layers=30, hidden_size=576, intermediate_size=1536, vocab_size=49152,
                          num_attention_heads=9, num_key_value_heads=3, head_dim=64)
    full = bench.flops_per_token(cfg, 1024, 16, "full")
    naive = bench.flops_per_token(cfg, 1024, 16, "lora_mini_ref")
    fast = bench.flops_per_token(cfg, 1024, 16, "lora_mini")
    assert 0.66 < naive["linear"] / full["linear"] < 0.72
    assert fast["total"] < naive["total"] < full["total"]
    assert naive["head"] / full["head"] == pytest.approx(2 / 3)
    assert naive["attention"] == full["attention"]


def test_bench_append_merges_runs(tmp_path):
    """--append adds a second session's rows; same (method, mode, shape) rows are replaced."""
    assert bench.main(_args(tmp_path, methods="full,lora_mini", shapes="2x16")) == 0
    assert bench.main(_args(tmp_path, methods="full,lora_mini_ref", shapes="2x16", append=True)) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    keys = sorted((r["method"], r["mode"], r["shape"]) for r in result["results"])
    assert keys == [("full", "eager", "2x16"), ("lora_mini", "eager", "2x16"), ("lora_mini_ref", "eager", "2x16")]
    assert len(result["commands"]) == 2 and "--append" not in result["commands"][0]
    assert result["commands"][1].endswith("--append")
    assert all(r["time_ratio"] > 0 for r in result["results"])
    # resume: full FT was already timed, so the second call ran only lora_mini_ref (and says so)
    by = {r["method"]: r for r in result["results"]}
    assert "call" not in by["full"] and by["lora_mini_ref"]["call"] == 2
    assert "from call 1" in by["lora_mini_ref"]["ratio_note"] and "ratio_note" not in by["lora_mini"]
    assert [c["methods"] for c in result["configs"]] == [["full", "lora_mini"], ["full", "lora_mini_ref"]]


def test_append_to_a_different_setting_is_refused_before_work(tmp_path, monkeypatch):
    assert bench.main(_args(tmp_path, methods="full", shapes="1x8")) == 0
    before = (tmp_path / "b.json").read_text()
    monkeypatch.setattr(bench, "load_base", lambda *a: pytest.fail("model loaded"))
    with pytest.raises(ValueError, match="--append: rank differs"):
        bench.main(_args(tmp_path, methods="full", shapes="1x8", rank=8, append=True))
    assert (tmp_path / "b.json").read_text() == before


def test_config_is_checked_before_loading_and_saved(tmp_path, monkeypatch):
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    cfg = bench.BenchConfig.from_args(p.parse_args(["--device", "cpu"]))
    assert cfg.out == "runs/bench/bench_cpu.json" and cfg.plot == "runs/bench/bench_cpu.png"   # never figures/
    assert cfg.modes == ("eager",) and cfg.shapes == ((1, 64), (1, 16)) and cfg.budget_s is None
    monkeypatch.setattr(bench, "load_base", lambda *a: pytest.fail("model loaded"))
    for bad, words in ((dict(modes="eager,fast"), "unknown mode 'fast'"), (dict(rank=0), "--rank must be"),
                       (dict(steps=0), "--steps must be at least 1"), (dict(budget_s=-5), "--budget-s"),
                       (dict(methods=","), "--methods must name at least one")):
        with pytest.raises(ValueError, match=words):
            bench.main(_args(tmp_path, **bad))
    assert not (tmp_path / "b.json").exists()
    with pytest.raises(ValueError, match="is a folder"):
        bench.main(_args(tmp_path, out=tmp_path))


def test_result_holds_its_config(tmp_path):
    assert bench.main(_args(tmp_path, methods="lora_mini_nosplit,full", shapes="1x8", script="bash x.sh")) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    cfg = result["config"]
    assert cfg["methods"] == ["lora_mini_nosplit", "full"] and cfg["shapes"] == [[1, 8]] and cfg["rank"] == 4
    assert result["script"] == "bash x.sh" and cfg["command"] == result["command"]
    assert all("error" not in r for r in result["results"])


def _fast_settings():
    """(enabled, split_rows) of the fast path in effect."""
    from lora_mini import fast
    return fast.settings().enabled, fast.settings().split_rows


def test_fast_path_split_rows_is_scoped():
    """fast.fast_path (as bench times each method) sets split_rows (and enabled) for one block and leaves the settings as they were."""
    from lora_mini import fast
    before = _fast_settings()
    with fast.fast_path(True, split_rows=0):
        assert _fast_settings() == (True, 0)
        x = torch.randn(64, 8)
        assert torch.allclose(fast.tn_matmul(x, x), x.t() @ x, atol=1e-5)
    with fast.fast_path(False):
        assert _fast_settings() == (False, before[1])
    assert _fast_settings() == before


def test_bench_shape_builds_a_random_model_and_records_it(tmp_path, monkeypatch):
    """--shape: a seeded random Llama of that shape, no files; rows carry the shape; mem_ratio is to full FT eager."""
    monkeypatch.setattr(bench, "load_model", lambda *a, **k: pytest.fail("no file or hub access with --shape"))
    args = _args(tmp_path, shape="tiny", shapes="2x16", methods="full,lora_mini,lora_mini_low,peft_gc,peft_gc_liger")
    assert bench.main(args) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["model_shape"]["hidden_size"] == 64 and result["model_shape"]["tie_word_embeddings"] is True
    assert "tiny" in result["model"] and "--shape tiny" in result["command"]
    by = {r["method"]: r for r in result["results"]}
    for m in ("full", "lora_mini", "lora_mini_low", "peft_gc"):
        r = by[m]
        assert "error" not in r, r
        assert r["model_shape"]["name"] == "tiny" and r["model_shape"]["num_hidden_layers"] == 2
        assert r["step_s"] > 0 and r["time_ratio"] > 0 and r["mem_ratio"] > 0
    assert "skipped" in by["peft_gc_liger"]
    # same weights and inputs: the low-memory mode computes the same loss
    assert by["lora_mini_low"]["loss_first"] == pytest.approx(by["lora_mini"]["loss_first"], abs=1e-3)
    # the seed fixes the weights: a second build is identical
    a = bench.shape_model("tiny", torch.float32, 0).state_dict()
    b = bench.shape_model("tiny", torch.float32, 0).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["model.embed_tokens.weight"].data_ptr() != 0


def test_smollm2_shapes_match_the_published_dims():
    from transformers import LlamaConfig
    cfg = LlamaConfig(**bench.SHAPES["smollm2-1.7b"], tie_word_embeddings=True)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size) == (2048, 24, 32, 8192)
    assert bench.SHAPES["smollm2-135m"]["num_key_value_heads"] == 3 and bench.SHAPES["smollm2-360m"]["hidden_size"] == 960
    with pytest.raises(ValueError, match="unknown --shape"):
        bench.shape_model("smollm2-7b", torch.float32)


def test_memory_rows_run_eager_only_and_liger_last():
    jobs = bench.plan([(2, 16)], ["eager", "compiled"], ["peft_gc_liger", "full", "lora_mini_low", "peft"])
    assert jobs[-1][0] == "peft_gc_liger" and jobs[-2][0] == "peft_gc_liger"
    assert jobs[0] == ("full", "eager", 2, 16)


def test_fused_rows_run_eager_and_graphed_only_before_compiled_rows(tmp_path):
    jobs = bench.plan([(2, 16)], ["eager", "compiled"], ["lora_mini_fused", "full", "peft_gc_liger", "full_fused"])
    assert [j[:2] for j in jobs] == [("full", "eager"), ("full_fused", "eager"), ("lora_mini_fused", "eager"),
                                     ("full", "compiled"), ("full_fused", "compiled"), ("lora_mini_fused", "compiled"),
                                     ("peft_gc_liger", "eager"), ("peft_gc_liger", "compiled")]
    cfg = bench.BenchConfig(model="tiny-llama", shapes=((1, 8),), methods=("lora_mini_fused",), modes=("compiled",),
                            quiet=True)
    rows = bench.run_all(cfg, bench.load_base("tiny-llama", torch.float32), torch.device("cpu"), bench.Budget(None))
    assert "inductor fuses" in rows[0]["skipped"]


def test_fused_ratios_and_loss_check():
    rows = [{"method": m, "mode": "eager", "shape": "8x1024", "batch": 8, "seq": 1024, "step_s": t,
             "tokens_per_s": 8192 / t, "peak_mem_gib": 10.0, "loss_first": loss}
            for m, t, loss in (("full", 1.0, 10.81), ("lora_mini", 0.9, 10.81), ("peft", 1.5, 10.81),
                               ("full_fused", 0.8, 10.82), ("lora_mini_fused", 0.6, 10.80))]
    d = bench.derived(rows)
    by = {r["method"]: r for r in rows}
    assert by["lora_mini_fused"]["time_ratio"] == pytest.approx(0.6)                  # to plain full FT
    assert by["lora_mini_fused"]["time_ratio_same_kernels"] == pytest.approx(0.75)    # to full_fused
    assert "time_ratio_same_kernels" not in by["lora_mini"]
    st = {t["metric"]: t for t in d["scale_targets"]}
    assert st["lora_mini_fused/full step, eager"]["met"] and st["lora_mini_fused/full_fused step, eager"]["met"]
    assert st["lora_mini_fused/peft tokens_per_s, eager"]["value"] == pytest.approx(2.5)
    assert st["lora_mini_fused/full step, graphed"]["met"] is None                      # no graphed rows
    check = {c["method"]: c for c in d["fused_loss_check"]}
    assert check["lora_mini_fused"]["plain_loss_first"] == 10.81 and check["lora_mini_fused"]["abs_diff"] == 0.01
    assert check["full_fused"]["abs_diff"] == 0.01


def test_scale_targets_are_ratios_of_the_rows():
    rows = [{"method": m, "mode": mode, "shape": "8x1024", "batch": 8, "seq": 1024, "step_s": t,
             "tokens_per_s": 8192 / t, "peak_mem_gib": mem}
            for m, mode, t, mem in (("full", "eager", 1.0, 30.0), ("lora_mini", "eager", 0.7, 20.0),
                                    ("peft", "eager", 1.5, 33.0), ("lora_mini_low", "eager", 0.9, 5.0),
                                    ("peft_gc_liger", "eager", 1.2, 5.5))]
    by = {t["metric"]: t for t in bench.check_scale_targets(rows)}
    assert by["lora_mini/full step, eager"]["value"] == 0.7 and by["lora_mini/full step, eager"]["met"]
    assert by["lora_mini/peft tokens_per_s, eager"]["value"] == pytest.approx(1.5 / 0.7, abs=1e-3)
    assert by["lora_mini/peft tokens_per_s, eager"]["met"] is True
    assert by["lora_mini_low/peft_gc_liger step"]["value"] == 0.75 and by["lora_mini_low/peft_gc_liger step"]["met"]
    assert by["lora_mini_low/lora_mini step, eager"]["met"] is True          # 0.9 / 0.7 = 1.29
    assert by["lora_mini/full step, compiled"]["met"] is None                 # no compiled rows


def test_profile_records_the_top_ops(tmp_path):
    assert bench.main(_args(tmp_path, shapes="1x8", methods="lora_mini", profile=True)) == 0
    row = json.loads((tmp_path / "b.json").read_text())["results"][0]
    prof = row["profile"]
    assert prof["total_ms"] > 0 and 0 < len(prof["top"]) <= 20
    assert all(t["ms"] >= 0 and t["calls"] >= 1 for t in prof["top"])
    assert [t["ms"] for t in prof["top"]] == sorted((t["ms"] for t in prof["top"]), reverse=True)


def test_flop_limit_and_achieved_tflops_from_a_model_shape():
    """The FLOP limit is LoRA's step FLOPs over full FT's; achieved TFLOP/s = FLOPs/token × tokens / step."""
    shape = {"name": "smollm2-1.7b", **bench.SHAPES["smollm2-1.7b"], "tie_word_embeddings": True}
    cfg = bench.shape_config(shape)
    lim = bench.flop_limit(cfg, 1024, 16)
    d = cfg.hidden_size
    assert 2 / 3 < lim < 2 / 3 + 4 * 16 / d                        # 2/3 plus the rank-r GEMMs, ~2·r/d
    assert lim < bench.flop_limit(cfg, 1024, 16, "lora_mini_ref") < 0.7
    f = bench.flops_per_token(cfg, 1024, 16, "full")["total"]
    row = {"method": "full", "mode": "eager", "shape": "8x1024", "batch": 8, "seq": 1024, "step_s": 0.25}
    assert bench.achieved_tflops(row, cfg, 16) == pytest.approx(f * 8192 / 0.25 / 1e12)
    peft = {**row, "method": "peft"}                                # PEFT runs the straightforward maths
    ref = bench.flops_per_token(cfg, 1024, 16, "lora_mini_ref")["total"]
    assert bench.achieved_tflops(peft, cfg, 16) == pytest.approx(ref * 8192 / 0.25 / 1e12)
    assert set(bench.FLOP_METHOD) == set(bench.METHODS)
    with pytest.raises(ValueError, match="no step time"):
        bench.achieved_tflops({k: v for k, v in row.items() if k != "step_s"} | {"skipped": "eager only"}, cfg, 16)
    with pytest.raises(ValueError, match="unknown method"):
        bench.achieved_tflops({**row, "method": "qlora"}, cfg, 16)
    with pytest.raises(ValueError, match="lacks hidden_size"):
        bench.shape_config({"name": "x"})


def test_plot_scale_and_memory_time_draw():
    pts = {"135M": {("full", "eager"): 100.0, ("lora_mini", "eager"): 50.0},
           "1.7B": {("full", "eager"): 390.0, ("lora_mini", "graphed"): 280.0}}
    lims = {"135M": {"FLOP limit": 0.73, "eager": 1.95}, "1.7B": {"FLOP limit": 0.68, "eager": 0.91}}
    fig = bench.plot_scale(pts, lims)
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 2 * 3 and len(fig.axes[1].patches) == 2 * 2
    rows = [{"method": "full", "step_s": 0.2, "peak_mem_gib": 30.0}, {"method": "peft_gc", "skipped": "x"},
            {"method": "lora_mini_low", "step_s": 0.3, "peak_mem_gib": 5.0}]
    fig = bench.plot_memory_time(rows, {"full": "full FT"})
    assert len(fig.axes[0].collections) == 2 and fig.axes[0].texts[0].get_text() == "full FT"


def test_fused_rows_plumbing_on_cpu(tmp_path, monkeypatch):
    """The fused rows' loss path (chunked linear + cross-entropy, tied head training under full FT) and
    their ratios, with Liger's kernels stubbed out (they need a GPU; tests/test_kernels.py covers them there)."""
    from lora_mini import kernels
    monkeypatch.setattr(kernels, "missing", lambda device: None)
    monkeypatch.setattr(kernels, "fuse", lambda model: setattr(model, "_lora_mini_kernels", "liger") or model)
    monkeypatch.setattr(kernels, "modules_fused", lambda model: {"rms_norm": -1, "swiglu": -1, "rope": False})
    args = _args(tmp_path, shapes="2x16", methods="full,lora_mini,full_fused,lora_mini_fused")
    args.model, args.shape = None, "tiny"
    assert bench.main(args) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    rows = {r["method"]: r for r in result["results"]}
    assert all("error" not in r and "skipped" not in r for r in rows.values()), rows
    assert rows["full_fused"]["kernels"] == {"rms_norm": -1, "swiglu": -1, "rope": False}
    assert rows["full_fused"]["trainable_params"] == rows["full"]["trainable_params"]
    assert rows["full_fused"]["time_ratio_same_kernels"] == 1.0
    assert rows["lora_mini_fused"]["time_ratio_same_kernels"] == pytest.approx(
        rows["lora_mini_fused"]["step_s"] / rows["full_fused"]["step_s"])
    check = {c["method"]: c for c in result["fused_loss_check"]}
    assert set(check) == {"full_fused", "lora_mini_fused"}
    assert all(c["abs_diff"] < 1e-3 for c in check.values()), check        # the chunked loss = the model's own
    assert {t["metric"] for t in result["targets_fused"]} == {"time_ratio", "mem_ratio"}
