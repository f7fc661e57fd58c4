CASES = {
    "3.1": {"wrong": ["def lora_param_count(layer, r):\n    return r * layer.weight.numel()",
                      "def lora_param_count(layer, r):\n    return r * sum(layer.weight.shape) + (0 if layer.bias is None else layer.bias.numel())",
                      "def lora_param_count(layer, r):\n    return 2 * r * layer.weight.shape[0]"],
            "right": ["import numpy as np\ndef lora_param_count(layer, r):\n    return np.int64(r * sum(layer.weight.shape))"]},
    "3.2": {"wrong": ["def init_lora(i, o, r):\n    return nn.Parameter(torch.randn(r, i) / math.sqrt(3 * i)), nn.Parameter(torch.zeros(o, r))",
                      "def init_lora(i, o, r):\n    return nn.Parameter((2 * torch.rand(1, i) - 1).repeat(r, 1) / math.sqrt(i)), nn.Parameter(torch.zeros(o, r))",
                      "def init_lora(i, o, r):\n    return nn.Parameter((2 * torch.rand(r, i) - 1) / math.sqrt(i)), nn.Parameter(torch.rand(o, r))",
                      "def init_lora(i, o, r):\n    return nn.Parameter((2 * torch.rand(i, r) - 1) / math.sqrt(i)), nn.Parameter(torch.zeros(r, o))",
                      "def init_lora(i, o, r):\n    A = nn.Parameter(torch.empty(r, i)); nn.init.kaiming_uniform_(A, a=math.sqrt(5))\n"
                      "    return A, nn.Parameter(torch.zeros(o, r))"],
            "right": ["def init_lora(in_features, out_features, r):\n    b = in_features ** -0.5\n"
                      "    return nn.Parameter(torch.empty(r, in_features).uniform_(-b, b)), nn.Parameter(torch.zeros(out_features, r))"]},
    "3.3": {"wrong": ["from lora_mini import LoRALinear as LoRAConv1D",
                      "class LoRAConv1D(nn.Module):\n    def __init__(self, base, r, alpha):\n        super().__init__()\n"
                      "        self.base = base; i, o = base.weight.shape\n"
                      "        self.lora_A = nn.Parameter((2 * torch.rand(r, i) - 1) / math.sqrt(i))\n"
                      "        self.lora_B = nn.Parameter(torch.zeros(o, r))\n"
                      "        base.requires_grad_(False)\n"
                      "    def forward(self, x):\n        return self.base(x) + x @ self.lora_A.T @ self.lora_B.T",   # no scale
                      "class LoRAConv1D(nn.Module):\n    def __init__(self, base, r, alpha):\n        super().__init__()\n"
                      "        self.base = base; i, o = base.weight.shape; self.s = alpha / r\n"
                      "        self.lora_A = nn.Parameter((2 * torch.rand(r, i) - 1) / math.sqrt(i))\n"
                      "        self.lora_B = nn.Parameter(torch.zeros(o, r))\n"
                      "    def forward(self, x):\n        return self.base(x) + self.s * (x @ self.lora_A.T @ self.lora_B.T)"],  # not frozen
            "right": ["class LoRAConv1D(nn.Module):\n    def __init__(self, base, r, alpha):\n        super().__init__()\n"
                      "        self.base = base.requires_grad_(False)\n        fan_in, fan_out = base.weight.shape\n"
                      "        b = fan_in ** -0.5\n        self.lora_A = nn.Parameter(torch.empty(r, fan_in).uniform_(-b, b))\n"
                      "        self.lora_B = nn.Parameter(torch.zeros(fan_out, r))\n        self.alpha, self.r = alpha, r\n"
                      "    def forward(self, x):\n"
                      "        return x @ (self.base.weight + self.alpha / self.r * (self.lora_B @ self.lora_A).T) + self.base.bias"]},
    "3.4": {"wrong": ["def conv1d_merged_weight(W, A, B, scaling):\n    return W + (B @ A).T",
                      "def conv1d_merged_weight(W, A, B, scaling):\n    return W + scaling * (B @ A)",
                      "def conv1d_merged_weight(W, A, B, scaling):\n    W += scaling * (B @ A).T\n    return W"],
            "right": ["def conv1d_merged_weight(W, A, B, scaling):\n    return torch.addmm(W, A.T, B.T, alpha=scaling)"]},
}
