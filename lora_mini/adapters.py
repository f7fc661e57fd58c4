"""LoRA's older alternatives: bottleneck adapters (Houlsby et al., 2019) and prompt tuning
(Lester et al., 2021). Both train few parameters; neither can be merged into W.

    apply_adapters(model, ["o_proj", "down_proj"], bottleneck=16)   # Houlsby placement
    model = SoftPrompt(model, n_tokens=20)                         # trainable virtual tokens

Bottleneck adapter after a layer h = f(x) (d = f's output size, m = bottleneck):

    y = h + W_up · σ(W_down · h + b_down) + b_up        W_down: m × d,  W_up: d × m (zeros)

Houlsby puts one after the attention output projection and one after the MLP, inside the
residual branch; wrapping `o_proj` and `down_proj` does exactly that. W_up starts at zero, so
a fresh adapter is the identity. The non-linearity σ is why it cannot be folded into W: the
extra layers cost time on every call.

Prompt tuning prepends n trainable embeddings P (n × d) to the input embeddings; the model is
frozen. It only adds sequence length (n more positions to attend over).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .inject import _set_module, find_targets
from .layers import LINEAR_TYPES


class BottleneckAdapter(nn.Module):
    """h = base(x);  y = h + up(gelu(down(h))).  down: d → m, up: m → d (zero init).

    Adapter weights are float32 master weights, cast to the activation dtype in forward.
    """

    def __init__(self, base: nn.Module, bottleneck: int = 16):
        super().__init__()
        if not isinstance(base, LINEAR_TYPES):
            raise TypeError(f"BottleneckAdapter follows an nn.Linear or Conv1D, got {type(base).__name__}")
        if isinstance(bottleneck, bool) or not isinstance(bottleneck, int) or bottleneck < 1:
            raise ValueError(f"bottleneck must be a positive integer (e.g. 16), got {bottleneck!r}")
        self.base = base
        w = base.weight
        d = w.shape[0] if isinstance(base, nn.Linear) else w.shape[1]          # output size of base
        self.d, self.m = d, bottleneck
        self.adapter_down = nn.Linear(d, bottleneck, device=w.device)     # m × d
        self.adapter_up = nn.Linear(bottleneck, d, device=w.device)       # d × m
        nn.init.normal_(self.adapter_down.weight, std=1e-2)   # Houlsby: near-identity init
        nn.init.zeros_(self.adapter_down.bias)
        nn.init.zeros_(self.adapter_up.weight)
        nn.init.zeros_(self.adapter_up.bias)
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.train(base.training)   # the mode of the layer it follows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base(x)
        dt = h.dtype
        z = F.gelu(F.linear(h, self.adapter_down.weight.to(dt), self.adapter_down.bias.to(dt)))
        return h + F.linear(z, self.adapter_up.weight.to(dt), self.adapter_up.bias.to(dt))

    def extra_repr(self) -> str:
        return f"d={self.d}, bottleneck={self.m}"


def apply_adapters(model: nn.Module, target_modules=("o_proj", "down_proj"), bottleneck: int = 16) -> nn.Module:
    """Put a BottleneckAdapter after every targeted layer and freeze everything else."""
    names = find_targets(model, list(target_modules) if not isinstance(target_modules, str) else target_modules)
    for name in names:
        _set_module(model, name, BottleneckAdapter(model.get_submodule(name), bottleneck))
    for name, p in model.named_parameters():
        p.requires_grad_(".adapter_" in name)
    return model


class SoftPrompt(nn.Module):
    """Prompt tuning: a frozen causal LM behind n trainable input embeddings P (n × d).

    forward(input_ids, attention_mask, labels) runs the LM on [P; embed(input_ids)]; the logits
    of the n prompt positions are dropped, so outputs line up with input_ids as usual.
    generate(...) returns input_ids followed by the new tokens, like model.generate.
    P starts as the embeddings of n random vocabulary tokens (Lester et al.'s best init).
    """

    def __init__(self, model: nn.Module, n_tokens: int = 20, seed: int = 0):
        super().__init__()
        if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 1:
            raise ValueError(f"n_tokens must be a positive integer (e.g. 20), got {n_tokens!r}")
        self.model = model
        for p in model.parameters():
            p.requires_grad_(False)
        emb = model.get_input_embeddings().weight                              # vocab × d
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, min(emb.shape[0], 5000), (n_tokens,), generator=g)
        self.prompt = nn.Parameter(emb.detach()[ids.to(emb.device)].float().clone())   # n × d
        self.n_tokens = n_tokens

    @property
    def config(self):
        return self.model.config

    @property
    def base_model(self):
        """The body (no LM head) with the prompt in front; its hidden states line up with input_ids."""
        return _PromptBody(self)

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def get_output_embeddings(self):
        return self.model.get_output_embeddings()

    @property
    def device(self):
        return self.prompt.device

    @property
    def generation_config(self):
        return self.model.generation_config

    def _inputs(self, input_ids, attention_mask):
        b = input_ids.shape[0]
        emb = self.model.get_input_embeddings()(input_ids)                      # b × T × d
        p = self.prompt.to(emb.dtype).unsqueeze(0).expand(b, -1, -1)           # b × n × d
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        ones = attention_mask.new_ones(b, self.n_tokens)
        return torch.cat([p, emb], dim=1), torch.cat([ones, attention_mask], dim=1)

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        embeds, mask = self._inputs(input_ids, attention_mask)
        out = self.model(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        out.logits = out.logits[:, self.n_tokens:]
        if labels is not None:   # next-token loss on the real positions only
            logits = out.logits[:, :-1].float()
            out.loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                       ignore_index=-100)
        return out

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, **kwargs):
        embeds, mask = self._inputs(input_ids, attention_mask)
        new = self.model.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)


class _PromptBody:
    """SoftPrompt's transformer body: body(input_ids, attention_mask).last_hidden_state (B, T, d)."""

    def __init__(self, sp: SoftPrompt):
        self.sp = sp

    def __call__(self, input_ids, attention_mask=None, **kwargs):
        embeds, mask = self.sp._inputs(input_ids, attention_mask)
        out = self.sp.model.base_model(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        out.last_hidden_state = out.last_hidden_state[:, self.sp.n_tokens:]
        return out
