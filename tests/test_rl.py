"""lora_mini.lab.rl: group advantages, reply masks and log-probs, and that the policy gradient learns."""
import argparse
import json
import math

import pytest
import torch

from lora_mini import tiny_model
from lora_mini.lab import rl
from lora_mini.lab.tasks import AdditionTask, char_tokenizer


@pytest.fixture()
def tiny():
    tok = char_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), initializer_range=0.2, pad_token_id=tok.pad_token_id,
                       eos_token_id=tok.eos_token_id)
    return model, tok


def test_group_advantages_centre_and_scale_each_group():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    adv = rl.group_advantages(r)
    assert torch.allclose(adv[0], torch.tensor([1.0, -1.0, -1.0, 1.0]))
    assert torch.equal(adv[1], torch.zeros(4))                  # all right: nothing to learn
    assert torch.allclose(adv[2].sum(), torch.tensor(0.0), atol=1e-6) and adv[2, 3] > 0
    raw = rl.group_advantages(r, normalize=False)
    assert torch.allclose(raw[0], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    assert torch.allclose(raw[2], torch.tensor([-0.25, -0.25, -0.25, 0.75]))


@pytest.mark.parametrize("reply, want", [("57", "57"), ("The sum is 57.", "57"), ("57 + 3 = 60", "57"),
                                         ("-4", "-4"), ("no digits", None), ("", None)])
def test_first_integer(reply, want):
    assert rl.first_integer(reply) == want


def test_sum_reward_reads_the_first_integer():
    ex = AdditionTask((1, 1), seed=0).example(3, 4)
    assert rl.sum_reward("7", ex) == 1.0 and rl.sum_reward("It is 7.", ex) == 1.0
    assert rl.sum_reward("8", ex) == 0.0 and rl.sum_reward("3 + 4 = 7", ex) == 0.0


def test_reply_mask_stops_after_the_first_end_token():
    end = 3
    replies = torch.tensor([[5, end, 9, end], [5, 6, 7, 8], [end, 1, 1, 1]])
    assert rl.reply_mask(replies, end).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_reply_logprobs_equal_a_token_by_token_sum(tiny):
    model, _ = tiny
    torch.manual_seed(0)
    ids = torch.randint(4, 100, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0                                          # the second reply ended early
    T = 5
    total, count = rl.reply_logprobs(model, ids, mask, T)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    for i in range(2):
        want = sum(torch.log_softmax(logits[i, t - 1], -1)[ids[i, t]].item()
                   for t in range(T, 9) if mask[i, t])
        assert math.isclose(total[i].item(), want, rel_tol=1e-4, abs_tol=1e-5)
    assert count.tolist() == [4.0, 2.0]


def _even_first_token(model, tok, examples) -> float:
    """P(the first reply token has an even id), averaged over the prompts."""
    ids, mask = rl.left_padded(tok, examples, tok.pad_token_id)
    with torch.no_grad():
        p = torch.softmax(model(input_ids=ids, attention_mask=mask).logits[:, -1].float(), -1)
    return p[:, 0::2].sum(-1).mean().item()


@pytest.mark.parametrize("method, lr", [("lora", 2e-2), ("full", 3e-3)])
def test_policy_gradient_raises_the_probability_of_rewarded_replies(tiny, method, lr):
    """Reward 1 when a reply's first token id is even: after a few steps the policy prefers such replies."""
    model, tok = tiny
    cfg = rl.RLConfig(method=method, rank=1, lr=lr, steps=6, prompts_per_step=4, group_size=8,
                      max_new_tokens=2, n_eval=4, eval_every=100)

    examples = AdditionTask((1, 1), seed=1, system="").make_splits(16, 0)[0]
    before = _even_first_token(model, tok, examples)
    even_ids = {i for i in range(len(tok)) if i % 2 == 0}

    def reward(text, _ex):
        first = tok(text, add_special_tokens=False)["input_ids"][:1]
        return 1.0 if first and first[0] in even_ids else 0.0

    result = rl.run_rl(model, tok, cfg, reward_fn=reward, progress=False)
    after = _even_first_token(model, tok, examples)
    assert after > before + 0.15, (before, after)
    assert len(result["curve"]) == 6 and result["config"]["method"] == method
    if method == "lora":
        assert result["trainable_params"] < result["total_params"] / 5


@pytest.mark.parametrize("bad, match", [(dict(method="qlora"), "method"), (dict(group_size=1), "group_size"),
                                        (dict(lr=float("nan")), "lr"), (dict(steps=0), "steps"),
                                        (dict(digits=(0, 1)), "digits"), (dict(rank=1.5), "rank")])
def test_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        rl.RLConfig(**bad)


def _args(*argv):
    p = argparse.ArgumentParser()
    rl.add_arguments(p)
    return p.parse_args(list(argv))


def test_command_line_smoke_run_writes_its_config(tmp_path, capsys):
    out = tmp_path / "rl.json"
    assert rl.main(_args("--model", "tiny", "--steps", "2", "--prompts-per-step", "2", "--group-size", "2",
                         "--n-eval", "4", "--eval-every", "1", "--device", "cpu", "--out", str(out))) == 0
    res = json.loads(out.read_text())
    assert res["config"]["steps"] == 2 and len(res["evals"]) == 3 and res["model"] == "tiny"
    assert not list(tmp_path.glob("*.tmp")) and "wrote" in capsys.readouterr().out


def test_command_line_refuses_bad_settings_before_loading(tmp_path):
    with pytest.raises(ValueError, match="--digits"):
        rl.main(_args("--model", "tiny", "--digits", "one", "--out", str(tmp_path / "x.json")))
    with pytest.raises(ValueError, match="folder"):
        rl.main(_args("--model", "tiny", "--out", str(tmp_path)))
    assert list(tmp_path.iterdir()) == []


def test_the_command_is_listed_and_every_option_has_help():
    from lora_mini.__main__ import build_parser
    parser, available = build_parser()
    assert "rl" in available
    p = argparse.ArgumentParser()
    rl.add_arguments(p)
    assert all(a.help for a in p._actions), [a.dest for a in p._actions if not a.help]


def _result(method, rank, lr, seed, finals):
    return {"config": {"method": method, "rank": rank, "lr": lr, "seed": seed},
            "curve": [{"step": i + 1, "reward": 0.1 * i, "loss": 0.0} for i in range(4)],
            "evals": [{"step": s, "exact_match": f, "accuracy": f} for s, f in zip((0, 2, 4), finals)],
            "final": {"step": 4, "exact_match": finals[-1], "accuracy": finals[-1]}}


def test_reading_results_best_lr_and_mean_curves(tmp_path):
    res = [_result("lora", 1, lr, s, (0.0, 0.2, acc + 0.02 * s)) for lr, acc in ((1e-4, 0.3), (3e-4, 0.6), (1e-3, 0.1))
           for s in (0, 1)] + [_result("full", 1, 1e-5, s, (0.0, 0.1, 0.5)) for s in (0, 1)]
    for i, r in enumerate(res):
        (tmp_path / f"r{i}.json").write_text(json.dumps(r))
    loaded = rl.load_results(tmp_path)
    assert len(loaded) == 8 and rl.method_label(loaded[-1]["config"]) in ("LoRA r=1", "full FT")
    best = rl.best_by_method(loaded)
    assert best["LoRA r=1"]["best_lr"] == 3e-4 and best["LoRA r=1"]["bracketed"]
    assert not best["full FT"]["bracketed"]                      # one LR: the plateau is the whole grid
    c = rl.mean_curves(loaded, "LoRA r=1", 3e-4, window=2)
    assert c["seeds"] == [0, 1] and math.isclose(c["exact_match"][-1], 0.61) and c["eval_steps"] == [0, 2, 4]
    assert [round(x, 3) for x in c["reward"]] == [0.0, 0.05, 0.15, 0.25]
    with pytest.raises(ValueError, match="no results"):
        rl.mean_curves(loaded, "LoRA r=1", 1e-2)
    with pytest.raises(FileNotFoundError, match="rl.sh"):
        rl.load_results(tmp_path / "empty")
