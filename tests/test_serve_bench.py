"""serve-bench end to end on the CPU with a tiny model: every row, exact tokens in float32, the budget."""
import json

import pytest

from lora_mini.__main__ import main
from lora_mini.lab.serve_bench import ServeBenchConfig

TINY = ["serve-bench", "--shape", "tiny", "--adapters", "3", "--rank", "4", "--requests", "6",
        "--new-tokens", "4", "--prompt-len", "5"]


def test_serve_bench_writes_every_row_with_matching_tokens(tmp_path):
    out = tmp_path / "serve.json"
    assert main(TINY + ["--out", str(out)]) == 0
    res = json.loads(out.read_text())
    rows = {r["method"]: r for r in res["rows"]}
    assert set(rows) == {"hf_generate_merged", "hf_generate_static", "decode_loop", "decode_loop_fused", "peft_mixed",
                         "peft_one_at_a_time", "peft_unmerged_one", "lora_mini_mixed"} and not res["skipped"]
    assert rows["decode_loop"]["tokens_match_static"] and rows["decode_loop"]["token_agreement_with_static"] == 1.0
    assert rows["decode_loop_fused"]["fuse"] and not rows["decode_loop"]["fuse"]
    assert all(abs(r["tokens_per_s"] * r["seconds"] - 6 * 4) < 1e-6 for r in rows.values())   # every row: all requests
    t = res["targets"]["decode_loop_vs_hf_generate"]
    assert t["got"] == min(rows["decode_loop"]["ratio_to_hf_generate"], rows["decode_loop"]["ratio_to_hf_static"])
    assert t["met"] == (t["got"] >= 3)                                   # float32 here: the tokens match
    assert all(r["tokens_match"] and r["token_agreement"] == 1.0 and r["tokens_per_s"] > 0 for r in rows.values())
    assert rows["decode_loop_fused"]["ratio_to_merged"] == 1.0 and rows["peft_mixed"]["ratio_to_peft"] == 1.0
    assert rows["decode_loop"]["ratio_to_hf_generate"] > 0 and res["targets"]["mixed_vs_peft_mixed"]["got"] > 0
    assert res["config"]["adapters"] == 3 and res["device"] == "cpu" and res["torch"] and "serve-bench" in res["command"]


def test_serve_bench_budget_and_bad_settings(tmp_path):
    out = tmp_path / "serve.json"
    assert main(TINY + ["--budget-s", "0.001", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert {s["method"] for s in res["skipped"]} == {"peft_mixed", "peft_one_at_a_time", "peft_unmerged_one"}
    assert {r["method"] for r in res["rows"]} == {"hf_generate_merged", "hf_generate_static", "decode_loop",
                                                  "decode_loop_fused", "lora_mini_mixed"}
    with pytest.raises(ValueError, match="multiple of --adapters"):
        ServeBenchConfig(adapters=3, requests=7)
    with pytest.raises(ValueError, match="--shape"):
        ServeBenchConfig(shape="huge")
    with pytest.raises(ValueError, match="--dtype must be one of auto, bfloat16, float32"):
        ServeBenchConfig(dtype="fp16")


def test_serve_bench_dtype_is_the_one_asked_for(tmp_path):
    out = tmp_path / "serve.json"
    assert main(TINY + ["--dtype", "bfloat16", "--budget-s", "0.001", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["dtype"] == "bfloat16" and res["config"]["dtype"] == "bfloat16"
    assert {r["method"] for r in res["rows"]} == {"hf_generate_merged", "hf_generate_static", "decode_loop",
                                                  "decode_loop_fused", "lora_mini_mixed"}
    assert all(0 <= r["token_agreement"] <= 1 for r in res["rows"])
    loop = next(r for r in res["rows"] if r["method"] == "decode_loop")
    assert loop["tokens_match_static"]                  # bf16: transformers' ops in its shapes, the same bits


def test_load_and_plot_read_the_rows(tmp_path):
    from lora_mini.lab import serve_bench
    res = {"rows": [{"method": "decode_loop", "tokens_per_s": 100.0}, {"method": "lora_mini_mixed", "tokens_per_s": 70.0}],
           "skipped": [{"method": "peft_mixed", "why": "needs about 65 s"}]}
    p = tmp_path / "s.json"
    p.write_text(json.dumps(res))
    got = serve_bench.load(p)
    assert set(got["by_method"]) == {"decode_loop", "lora_mini_mixed"}
    fig = serve_bench.plot({"a": got, "b": got})
    assert len(fig.axes[0].patches) == 2 * 2
    res["skipped"].append({"method": "decode_loop", "why": "x"})
    p.write_text(json.dumps(res))
    with pytest.raises(ValueError, match="both timed and skipped"):
        serve_bench.load(p)
