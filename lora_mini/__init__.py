"""lora_mini: Low-Rank Adaptation from scratch, small and real.

    from lora_mini import load_model, apply_lora, merge_and_unload, save_adapter
    model, tok = load_model()                       # SmolLM2-135M-Instruct, offline
    apply_lora(model, "all-linear", r=16, alpha=32)  # W frozen; A (r×in), B (out×r) train
"""
from .layers import DoRALinear, LoRALinear, lora_scaling
from .targets import find_targets, parse_targets
from .inject import apply_lora, count_parameters, lora_modules, parameter_report, parameter_table
from .merge import disable_lora, merge, merge_and_unload, unmerge
from .io import adapter_bytes, load_adapter, save_adapter
from .models import load_model, tiny_model

__all__ = [
    "LoRALinear", "DoRALinear", "lora_scaling", "parse_targets", "find_targets", "apply_lora", "count_parameters", "lora_modules",
    "parameter_report", "parameter_table", "merge", "unmerge", "merge_and_unload", "disable_lora",
    "save_adapter", "load_adapter", "adapter_bytes", "load_model", "tiny_model",
]
__version__ = "0.1.0"
