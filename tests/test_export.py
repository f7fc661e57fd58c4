"""lora_mini.lab.export: the merged folder loads in plain transformers with the same logits and
greedy reply as lora_mini's model; OUT is written atomically and never clobbered by accident."""
import argparse
import copy
import json
import os

import pytest
import torch

from lora_mini import apply_lora, load_model, merge_and_unload, save_adapter, tiny_model
from lora_mini.lab import export
from lora_mini.lab.tasks import char_tokenizer
from lora_mini.lab.generate import GenerateConfig, prompt_ids, reply_tokens

CHAT = [{"role": "user", "content": "Convert 3 km to m."}]


def with_lora(model, seed=0):
    torch.manual_seed(seed)
    apply_lora(model, "all-linear", r=4, alpha=8)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)                    # B = 0 would make the merge a no-op
    return model


@torch.no_grad()
def assert_same_model(ours, folder, tok, tol=1e-4):
    """Plain transformers loads `folder`; logits and greedy tokens match `ours` (the LoRA model)."""
    from transformers import AutoModelForCausalLM
    theirs = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    ids = torch.tensor([prompt_ids(tok, CHAT) + list(range(5, 40))])
    diff = (ours(input_ids=ids).logits - theirs(input_ids=ids).logits).abs().max().item()
    assert diff < tol
    cfg = GenerateConfig(max_new_tokens=12)
    assert reply_tokens(ours, tok, CHAT, cfg) == reply_tokens(theirs, tok, CHAT, cfg)
    config = json.loads((folder / "config.json").read_text())
    assert not [k for k in config if "quant" in k or "gguf" in k]
    return theirs, diff


@pytest.fixture
def tuned(tmp_path):
    tok = char_tokenizer()
    tiny_model("llama", seed=3, vocab_size=len(tok), eos_token_id=tok.eos_token_id,
               pad_token_id=tok.pad_token_id).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    model, tok = load_model(str(tmp_path / "base"), device="cpu")
    with_lora(model)
    save_adapter(model, tmp_path / "adapter")
    return tmp_path, model, tok


def test_round_trip_on_a_tiny_llama(tuned):
    root, model, tok = tuned
    lora = copy.deepcopy(model)
    merged_ref = merge_and_unload(copy.deepcopy(model))
    info = export.export_merged(model, tok, root / "merged", source={"adapter": "x"})
    assert info["check"]["max_logit_diff"] <= 1e-4 and info["check"]["same_greedy"]
    theirs, _ = assert_same_model(lora, root / "merged", tok)            # the unmerged LoRA model
    assert_same_model(merged_ref, root / "merged", tok, tol=1e-5)        # lora_mini's merged model
    assert type(theirs).__name__ == "LlamaForCausalLM"
    files = set(os.listdir(root / "merged"))
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
            "lora_mini_export.json"} <= files and not [f for f in files if f.endswith((".bin", ".pt"))]
    assert theirs.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")   # end of turn
    from transformers import AutoTokenizer
    assert AutoTokenizer.from_pretrained(str(root / "merged")).apply_chat_template(CHAT, tokenize=False) == \
        tok.apply_chat_template(CHAT, tokenize=False)
    assert not [p for p in os.listdir(root) if p.startswith(".merged")]   # no temporary folders left


def test_command_loads_the_base_the_adapter_records(tuned, capsys):
    root, model, tok = tuned
    p = argparse.ArgumentParser()
    export.add_arguments(p)
    assert export.main(p.parse_args(["--adapter", str(root / "adapter"), "--merged", str(root / "out")])) == 0
    assert "same greedy reply: True" in capsys.readouterr().out
    assert_same_model(model, root / "out", tok)
    recorded = json.loads((root / "out" / "lora_mini_export.json").read_text())
    assert recorded["adapter"] == str(root / "adapter") and recorded["dtype"] == "float32"
    # an existing non-empty folder is refused before anything loads, and is left as it was
    before = {f: (root / "out" / f).read_bytes() for f in os.listdir(root / "out")}
    with pytest.raises(FileExistsError, match="--overwrite"):
        export.main(p.parse_args(["--adapter", str(root / "nowhere"), "--merged", str(root / "out")]))
    assert {f: (root / "out" / f).read_bytes() for f in os.listdir(root / "out")} == before
    export.main(p.parse_args(["--adapter", str(root / "adapter"), "--merged", str(root / "out"), "--overwrite",
                              "--dtype", "bfloat16"]))
    assert json.loads((root / "out" / "config.json").read_text())["dtype"] == "bfloat16"


def test_a_failed_check_leaves_out_as_it_was(tuned, monkeypatch):
    root, model, tok = tuned
    (root / "out").mkdir()
    (root / "out" / "keep.txt").write_text("old")
    monkeypatch.setattr(export, "compare", lambda *a: {"max_logit_diff": 1.0, "same_greedy": False, "tokens": 1})
    with pytest.raises(RuntimeError, match="was not written"):
        export.export_merged(model, tok, root / "out", overwrite=True)
    assert os.listdir(root / "out") == ["keep.txt"]
    assert not [p for p in os.listdir(root) if p.startswith(".out")]
    with pytest.raises(FileExistsError, match="is a file"):
        export.export_merged(model, tok, root / "out" / "keep.txt")


@pytest.mark.slow
def test_round_trip_on_smollm2(smollm, tmp_path):
    base, tok = smollm
    model = with_lora(copy.deepcopy(base))
    lora = copy.deepcopy(model)
    info = export.export_merged(model, tok, tmp_path / "merged")
    assert info["check"]["same_greedy"] and info["check"]["tokens"] > 0
    # 30 layers in float32: W + s·B·A summed once vs W·x + s·B·(A·x) every step differ by ~1e-4 in the
    # logits (|logits| ~ 20), the thread count deciding the summation order; a wrong merge is off by far more
    theirs, diff = assert_same_model(lora, tmp_path / "merged", tok, tol=5e-4)
    assert type(theirs).__name__ == "LlamaForCausalLM" and theirs.config.tie_word_embeddings
    eos = theirs.generation_config.eos_token_id
    assert tok.convert_tokens_to_ids("<|im_end|>") in (eos if isinstance(eos, list) else [eos])
