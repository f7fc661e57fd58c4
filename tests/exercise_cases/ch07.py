CASES = {
    "7.1": {"wrong": ["def best_lr(points):\n    return min(points, key=points.get)",                                  # the grid LR
                      "import numpy as np\ndef best_lr(points):\n    x = np.log10(list(points)); y = list(points.values())\n"
                      "    a, b, c = np.polyfit(x, y, 2)\n    return 10 ** (-b / (2 * a))",                              # all points
                      "import numpy as np\ndef best_lr(points):\n    lrs = list(points); i = min(range(len(lrs)), key=lambda k: points[lrs[k]])\n"
                      "    i = min(max(i, 1), len(lrs) - 2)\n    x = np.log10(lrs[i - 1:i + 2]); y = [points[l] for l in lrs[i - 1:i + 2]]\n"
                      "    a, b, c = np.polyfit(x, y, 2)\n    return 10 ** (-b / (2 * a))",                              # dict order, no sort
                      "import numpy as np\ndef best_lr(points):\n    lrs = sorted(points); i = min(range(len(lrs)), key=lambda k: points[lrs[k]])\n"
                      "    if i in (0, len(lrs) - 1):\n        return lrs[i]\n    x = lrs[i - 1:i + 2]; y = [points[l] for l in x]\n"
                      "    a, b, c = np.polyfit(x, y, 2)\n    return -b / (2 * a)"],                                     # linear LR, not log
            "right": ["import numpy as np\ndef best_lr(points):\n    lrs = sorted(points)\n    i = int(np.argmin([points[l] for l in lrs]))\n"
                      "    if i == 0 or i == len(lrs) - 1:\n        return np.float64(lrs[i])\n"
                      "    (x0, x1, x2) = np.log10(lrs[i - 1:i + 2]); (y0, y1, y2) = (points[l] for l in lrs[i - 1:i + 2])\n"
                      "    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)\n"
                      "    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)\n    return 10 ** (x1 - 0.5 * num / den)"]},
    "7.2": {"wrong": ["def mlp_rank_to_match(r_attn, d, d_ff, d_kv):\n    return 39",
                      "def mlp_rank_to_match(r_attn, d, d_ff, d_kv):\n    return r_attn * (4 * 2 * d) // (3 * (d + d_ff))",
                      "def mlp_rank_to_match(r_attn, d, d_ff, d_kv):\n    return r_attn * (6 * d + 2 * d_kv) // (3 * (d + d_ff))",
                      "def mlp_rank_to_match(r_attn, d, d_ff, d_kv):\n    return round(r_attn * (6 * d + 2 * d_kv) / (2 * (d + d_ff)))"],
            "right": ["import numpy as np\ndef mlp_rank_to_match(r_attn, d, d_ff, d_kv):\n"
                      "    return np.rint(r_attn * (4 * d + 2 * (d + d_kv)) / (3 * (d + d_ff)))"]},
    "7.3": {"wrong": ["def bracket_search(loss, start, grid, max_runs=7):\n    return list(grid), True",
                      "def bracket_search(loss, start, grid, max_runs=7):\n    tried = {}\n    i = grid.index(start)\n"
                      "    for j in (i, i + 1, i - 1):\n        if 0 <= j < len(grid):\n            tried[grid[j]] = loss(grid[j])\n"
                      "    while len(tried) < max_runs:\n        idx = sorted(grid.index(x) for x in tried)\n"
                      "        b = grid.index(min(tried, key=tried.get))\n        if b == idx[0] and b > 0:\n            j = b - 1\n"
                      "        elif b == idx[-1] and b + 1 < len(grid):\n            j = b + 1\n        else:\n            break\n"
                      "        tried[grid[j]] = loss(grid[j])\n    return list(tried), True",                        # up first, always bracketed
                      "def bracket_search(loss, start, grid, max_runs=7):\n    tried = {}\n    i = grid.index(start)\n"
                      "    for j in (i, i - 1, i + 1):\n        if 0 <= j < len(grid):\n            tried[grid[j]] = loss(grid[j])\n"
                      "    while len(tried) < max_runs:\n        idx = sorted(grid.index(x) for x in tried)\n"
                      "        b = grid.index(min(tried, key=tried.get))\n        if b == idx[0] and b > 0:\n            j = b - 1\n"
                      "        elif b == idx[-1] and b + 1 < len(grid):\n            j = b + 1\n        else:\n            break\n"
                      "        tried[grid[j]] = loss(grid[j])\n    return list(tried), True"],                       # 'bracketed' at the edge
            "right": ["import numpy as np\ndef bracket_search(loss, start, grid, max_runs=7):\n    order, seen = [], {}\n"
                      "    def go(j):\n        order.append(np.float64(grid[j])); seen[j] = loss(grid[j])\n"
                      "    i = min(range(len(grid)), key=lambda k: abs(np.log(grid[k] / start)))\n"
                      "    for j in (i, i - 1, i + 1):\n        if 0 <= j < len(grid):\n            go(j)\n"
                      "    while len(seen) < max_runs:\n        b = min(seen, key=lambda j: (seen[j], j))\n"
                      "        if b == min(seen) and b > 0:\n            go(b - 1)\n        elif b == max(seen) and b < len(grid) - 1:\n"
                      "            go(b + 1)\n        else:\n            break\n    b = min(seen, key=lambda j: (seen[j], j))\n"
                      "    return order, np.bool_(min(seen) < b < max(seen))"]},
    "7.4": {"wrong": ["def amplification_factor(W, dW, r):\n    U, S, Vh = torch.linalg.svd(W, full_matrices=False)\n"
                      "    return torch.linalg.norm(dW) / torch.linalg.norm(U[:, :r].T @ W @ Vh[:r].T)",            # W's SVD
                      "def amplification_factor(W, dW, r):\n    U, S, Vh = torch.linalg.svd(dW, full_matrices=False)\n"
                      "    return torch.linalg.norm(dW) / torch.linalg.norm(U.T @ W @ Vh.T)",                        # not truncated
                      "def amplification_factor(W, dW, r):\n    U, S, Vh = torch.linalg.svd(dW, full_matrices=False)\n"
                      "    return torch.linalg.matrix_norm(dW, 2) / torch.linalg.matrix_norm(U[:, :r].T @ W @ Vh[:r].T, 2)"],  # spectral
            "right": ["def amplification_factor(W, dW, r):\n    U, S, V = torch.svd_lowrank(dW.double(), q=r + 10, niter=6)\n"
                      "    P = U[:, :r].T @ W.double() @ V[:, :r]\n    return (dW.double().pow(2).sum().sqrt() / P.pow(2).sum().sqrt()).item()",
                      "def amplification_factor(W, dW, r):\n    U, S, Vh = torch.linalg.svd(dW, full_matrices=False)\n"
                      "    return torch.linalg.norm(dW) / torch.linalg.norm(U[:, :r].T @ W @ Vh[:r].T)"]},   # float32 throughout
}
