"""The anisotropic Gaussian's running products against one exponential per offset.

400 seeded random configurations (images of 5-40 pixels, 1 or 3 channels, values up to
1000; sigma maps at random resolutions from 0 to about 4.5 px, |rho| up to 1; float32 and
float64), each filtered without autograd as ``gaussian`` chooses (products, clamped where
factors leave the floating-point range, see ``pkn/kernels/_gaussian_plan.py``) and with
one exponential per offset forced. Prints how many bands used clamped products, and the
largest difference in units of eps x the image's range; exits 1 on a non-finite output.
Usage: ``.venv/bin/python scripts/check_gaussian_products.py``.
"""

import importlib
import math
import random

import torch

from pkn.kernels.gaussian import gaussian

GG = importlib.import_module("pkn.kernels._gaussian_general")
PL = importlib.import_module("pkn.kernels._gaussian_plan")


def main() -> int:
    random.seed(3)
    torch.manual_seed(3)
    clamped, worst = 0, {}
    cap, limit = GG._product_cap, GG._exp_limit

    def counting(*a):
        nonlocal clamped
        v = cap(*a)
        clamped += v is not None and v < math.inf
        return v

    for _ in range(400):
        dt = random.choice([torch.float32, torch.float64])
        H, W = random.randint(5, 40), random.randint(5, 40)
        x = torch.rand(1, random.choice([1, 3]), H, W, dtype=dt) * random.choice([1, 1000])
        h, w = random.randint(1, H), random.randint(1, W)
        s1, s2 = (
            random.choice([0, 0.01, 0.1, 0.5])
            + random.random() * 4 * torch.rand(1, 1, h, w, dtype=dt)
            for _ in "12"
        )
        rho = (torch.rand(1, 1, h, w, dtype=dt) * 2 - 1) * random.choice([0.3, 0.5, 0.7, 0.9, 1.0])
        with torch.no_grad():
            GG._product_cap = counting
            y = gaussian(x, s1, s2, rho)
            GG._product_cap = cap
            GG._exp_limit = PL._exp_limit = lambda dtype: -1.0  # no products anywhere
            try:
                y_exp = gaussian(x, s1, s2, rho)
            finally:
                GG._exp_limit = PL._exp_limit = limit
        if not bool(torch.isfinite(y).all()):
            print("non-finite output")
            return 1
        e = float((y - y_exp).abs().max()) / (float(x.max() - x.min()) * torch.finfo(dt).eps)
        worst[str(dt)] = max(worst.get(str(dt), 0.0), e)
    print(f"bands with clamped products: {clamped}")
    print(
        "largest |products - exponentials| in eps x range:",
        {k: round(v, 2) for k, v in worst.items()},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
