"""The one configuration of a training job: frozen dataclasses, validated when built.

    cfg = FinetuneConfig.preset("cpu-quick", lora=LoraConfig(rank=8), out="runs/x")
    cfg = FinetuneConfig.from_dict(json.loads(path.read_text())["config"])   # what a run saved
    cfg.to_dict()                                                          # JSON-ready, saved with results

Every field is checked in __post_init__; a bad value raises ConfigError (a ValueError) whose
message names the command-line option and the fix, e.g. "--rank must be a positive integer, got 0".
Nothing here reads the environment or touches a model or a file.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from numbers import Integral, Real

from ..kernels import KERNELS


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line that names the option and the fix."""


def _int(name: str, value, low: int = 1, what: str = "a positive integer") -> None:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ConfigError(f"{name} must be {what}, got {value!r}")


def _num(name: str, value, low: float = 0.0, strict: bool = True, what: str = "a positive number") -> None:
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        raise ConfigError(f"{name} must be {what}, got {value!r}")


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


PRESET_NAMES = ("cpu-quick", "gpu")


def parse_targets(spec):
    """A target spec as the command line writes it -> what apply_lora takes: lora_mini.targets.parse_targets
    ("all-linear"; a string with regex characters is a regex; else comma-separated module names),
    its errors as ConfigError naming the option."""
    from ..targets import parse_targets as core_parse_targets
    try:
        return core_parse_targets(spec)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--targets: {e}") from None


@dataclass(frozen=True)
class LoraConfig:
    """What to train: LoRA on `targets` with rank r and scale alpha/r, or every weight ("full")."""
    method: str = "lora"             # "lora" | "full"
    rank: int = 16                   # r: A is r x in, B is out x r
    alpha: float = 32.0              # ΔW = (alpha / r) B·A
    targets: object = "all-linear"   # "all-linear", a regex, or a list of module-name suffixes
    dropout: float = 0.0

    def __post_init__(self):
        _choice("--method", self.method, ("lora", "full"))
        _int("--rank", self.rank)
        _num("--alpha", self.alpha)
        _num("--dropout", self.dropout, strict=False, what="a number in [0, 1)")
        if self.dropout >= 1:
            raise ConfigError(f"--dropout must be a number in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "targets", parse_targets(self.targets))


@dataclass(frozen=True)
class TrainConfig:
    """How to train: steps, batch, AdamW with warm-up + decay, clipping, step strategy, precision."""
    steps: int = 48
    batch_size: int = 16             # the global batch (all ranks together)
    lr: float = 2e-3                 # peak learning rate
    warmup_steps: int = 0
    schedule: str = "cosine"         # "cosine" | "linear" | "constant"
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0    # None or 0: no clipping
    seed: int = 0
    log_every: int = 10              # sync losses to the host every N steps
    eval_every: int = 0              # 0: evaluate at the start and the end only
    budget_s: float | None = None    # stop (checkpoint first) after this many seconds of training
    strategy: str = "auto"           # "auto" | "eager" | "compiled" | "cuda_graph" (see trainer.choose_strategy)
    precision: str = "auto"          # "auto" | "bf16" | "fp16" | "fp32"
    autocast: bool | None = None     # None: on a GPU when a weight the forward uses is float32
    checkpoint_every: int = 0        # 0: no periodic checkpoints
    on_nonfinite: str = "stop"       # "stop": a NaN/Inf loss raises NonFiniteLoss; "continue": record it (LR sweeps)
    memory: str = "normal"           # "low": layer checkpointing + chunked loss (lora_mini.lowmem), eager steps
    kernels: str = "plain"           # "liger": fused RMSNorm / SwiGLU / RoPE Triton kernels (lora_mini.kernels; GPU)

    def __post_init__(self):
        _int("--steps", self.steps)
        _int("--batch-size", self.batch_size)
        _num("--lr", self.lr)
        _int("--warmup", self.warmup_steps, low=0, what="a non-negative integer")
        _choice("--schedule", self.schedule, ("cosine", "linear", "constant"))
        _num("--weight-decay", self.weight_decay, strict=False, what="a non-negative number")
        if self.grad_clip is not None:
            _num("--grad-clip", self.grad_clip, strict=False, what="a non-negative number")
        _int("--seed", self.seed, low=0, what="a non-negative integer")
        _int("--log-every", self.log_every)
        _int("--eval-every", self.eval_every, low=0, what="a non-negative integer (0: start and end only)")
        if self.budget_s is not None:
            _num("--budget", self.budget_s, what="a positive number of seconds")
        _choice("--strategy", self.strategy, ("auto", "eager", "compiled", "cuda_graph"))
        _choice("--precision", self.precision, ("auto", "bf16", "fp16", "fp32"))
        _int("--checkpoint-every", self.checkpoint_every, low=0, what="a non-negative integer (0: never)")
        _choice("on_nonfinite", self.on_nonfinite, ("stop", "continue"))
        _choice("--memory", self.memory, ("normal", "low"))
        _choice("--kernels", self.kernels, KERNELS)
        if self.memory == "low" and self.strategy in ("compiled", "cuda_graph"):
            raise ConfigError(f"--memory low runs eager steps (it recomputes layers in the backward); "
                              f"drop --strategy {self.strategy} or use --strategy eager")


@dataclass(frozen=True)
class TaskConfig:
    """The addition task of chapter 6: operand digits (lo, hi), split sizes."""
    digits: tuple = (2, 2)
    n_train: int = 2000
    n_test: int = 48
    n_val: int = 0                   # training pairs held out for choosing the LR

    def __post_init__(self):
        d = self.digits
        d = (d, d) if isinstance(d, Integral) else tuple(d)
        if len(d) == 1:
            d = d * 2
        if len(d) != 2 or not all(isinstance(x, Integral) and 1 <= x <= 9 for x in d) or d[0] > d[1]:
            raise ConfigError(f"--digits must be 'lo,hi' with 1 <= lo <= hi <= 9, e.g. 2,3; got {self.digits!r}")
        object.__setattr__(self, "digits", (int(d[0]), int(d[1])))
        _int("--n-train", self.n_train)
        _int("--n-test", self.n_test)
        _int("--n-val", self.n_val, low=0, what="a non-negative integer")


@dataclass(frozen=True)
class DataSettings:
    """Own data (JSONL chats): mirrors lab.data.DataConfig, which reads and checks the files."""
    path: str
    val_path: str | None = None
    val_fraction: float = 0.1
    train_on_all: bool = False
    max_length: int = 512

    def __post_init__(self):
        if not self.path:
            raise ConfigError("--data needs a file name, e.g. --data data/sample.jsonl")
        if not (isinstance(self.val_fraction, Real) and 0 <= self.val_fraction < 1):
            raise ConfigError(f"--val-fraction must be a number in [0, 1), got {self.val_fraction!r}")
        _int("--max-length", self.max_length, low=8, what="an integer >= 8")


@dataclass(frozen=True)
class FinetuneConfig:
    """A whole `finetune` job: model, adapters, training, task or own data, outputs."""
    model: str = "smollm2-135m-instruct"
    device: str = "auto"
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataSettings | None = None
    out: str | None = "runs/finetune"
    adapter_format: str = "peft"     # "peft" | "lora_mini"
    eval_batch_size: int = 64
    merge_check: bool = True
    preset: str | None = None        # the name of the preset the defaults came from

    def __post_init__(self):
        for name, kind in (("lora", LoraConfig), ("train", TrainConfig), ("task", TaskConfig)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"FinetuneConfig.{name} must be a {kind.__name__}")
        if not self.model:
            raise ConfigError("--model must name a model: smollm2-135m-instruct, a .gguf file or a hub id")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", str(self.device)):
            raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N; got {self.device!r}")
        _choice("--adapter-format", self.adapter_format, ("peft", "lora_mini"))
        _int("--eval-batch-size", self.eval_batch_size)
        if self.preset is not None:
            _choice("--preset", self.preset, PRESET_NAMES)

    @classmethod
    def preset_config(cls, name: str, **overrides) -> "FinetuneConfig":
        """The named preset (PRESETS), with any top-level field replaced by `overrides`."""
        _choice("--preset", name, PRESET_NAMES)
        return replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["task"]["digits"] = list(self.task.digits)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneConfig":
        d = dict(d)
        parts = {"lora": LoraConfig, "train": TrainConfig, "task": TaskConfig, "data": DataSettings}
        for key, kind in parts.items():
            if isinstance(d.get(key), dict):
                d[key] = kind(**_known(kind, d[key]))
        return cls(**_known(cls, d))


def _known(kind, d: dict) -> dict:
    names = {f.name for f in fields(kind)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{kind.__name__} has no setting {unknown[0]!r}; known: {', '.join(sorted(names))}")
    return d


def to_dict(cfg) -> dict:
    """Any config dataclass -> a JSON-ready dict."""
    return cfg.to_dict() if hasattr(cfg, "to_dict") else asdict(cfg)


# The quick CPU run (2-digit sums, ~3 min of CPU time; reaches ~85% from 0%) and the full GPU run (2–3 digits).
PRESETS = {
    "cpu-quick": FinetuneConfig(
        train=TrainConfig(steps=48, batch_size=16, lr=2e-3, warmup_steps=5, eval_every=24),
        task=TaskConfig(digits=(2, 2), n_train=2000, n_test=48), preset="cpu-quick"),
    "gpu": FinetuneConfig(
        train=TrainConfig(steps=300, batch_size=64, lr=2e-3, warmup_steps=30, eval_every=100),
        task=TaskConfig(digits=(2, 3), n_train=20000, n_test=300), preset="gpu"),
}
FULL_FT_LR = {"cpu-quick": 5e-5, "gpu": 1e-4}    # --method full's default peak LR per preset


def default_preset(device: str) -> str:
    """"gpu" on a CUDA device, else "cpu-quick"."""
    return "gpu" if str(device).startswith("cuda") else "cpu-quick"
