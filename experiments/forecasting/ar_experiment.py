"""SpaceTime vs S4D on AR(p) processes: how close does each get to the optimal forecaster?

The claim under test (SpaceTime, arXiv 2303.09489): companion SSMs can represent AR(p)
processes, prior deep SSMs (S4/S4D) cannot. Data: ``ssm.data.autoregressive.ARProcess``,
stationary AR(p) with random stable roots (modulus in ``--root-radius``, default [0.9, 0.98])
and unit variance. Since the
process is known, the oracle (the conditional mean, the recursion run forward with the true
coefficients) gives the smallest achievable MSE; each model's test MSE is reported relative to
the oracle's MSE on the same test windows (1.0 = optimal), and as the fraction of the
predictable part it captured, ``(MSE_zero - MSE) / (MSE_zero - MSE_oracle)`` (1 = oracle,
0 = no better than forecasting the mean, 0).

Models, trained the same way (plain loop, AdamW via ``ssm.optim.param_groups``, MSE on the
horizon, constant lr, fixed epochs; the best epoch on the val split is tested):
- SpaceTime: one encoder block (companion SSM + MLP, preprocessing on) and the closed-loop
  companion decoder; ``center=False`` (zero-mean data); plus its auxiliary losses.
- S4D: ``SequenceModel`` of causal S4D layers (GLU block, prenorm), forecasting through appended
  zero inputs as S4 does on the Informer benchmarks (``ssm.train.tasks.Forecasting``).
Both with the same d_state and about the same number of parameters (printed).

    python experiments/forecasting/ar_experiment.py --orders 4 6 8 --json ar_cpu.json
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time

import torch

import ssm
from ssm.data.autoregressive import ARProcess
from ssm.models.sequence import SequenceModel
from ssm.models.spacetime import SpaceTime
from ssm.optim import param_groups


class ZeroPadForecaster(torch.nn.Module):
    """Wrap a per-step model: append ``horizon`` zeros, read the last ``horizon`` outputs."""

    def __init__(self, model: torch.nn.Module, horizon: int):
        super().__init__()
        self.model, self.horizon = model, horizon

    def forward(self, x):  # (B, lag, 1) -> (B, horizon, 1)
        x = torch.cat([x, x.new_zeros(x.shape[0], self.horizon, x.shape[2])], dim=1)
        return self.model(x)[:, -self.horizon :]


def build(kind: str, args, lag: int, horizon: int) -> torch.nn.Module:
    if kind == "spacetime":
        return SpaceTime(lag=lag, horizon=horizon, d_model=args.st_d_model, d_state=args.d_state,
                         n_kernels=args.st_kernels, dropout=0.0, center=False)
    layer = functools.partial(ssm.S4D, d_state=args.d_state, bidirectional=False)
    return ZeroPadForecaster(SequenceModel(1, 1, d_model=args.s4d_d_model, n_layers=args.s4d_layers, layer=layer,
                                           pool="none"), horizon)


def evaluate(model, x, y, batch=256) -> float:
    model.eval()
    with torch.no_grad():
        err = sum(((model(x[i : i + batch]) - y[i : i + batch]) ** 2).sum().item() for i in range(0, len(x), batch))
    return err / y.numel()


def train(model, data, args, seed: int, epochs: int) -> dict:
    torch.manual_seed(seed)
    train_ds, val_ds, test_ds = data
    opt = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"}
                             for g in param_groups(model, lr=args.lr, weight_decay=args.weight_decay)])
    best, best_state, t0 = float("inf"), None, time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(train_ds), generator=g).split(args.batch_size):
            out = model(train_ds.x[idx])
            loss = torch.nn.functional.mse_loss(out, train_ds.y[idx])
            if hasattr(model, "aux_loss"):
                loss = loss + model.aux_loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
        val = evaluate(model, val_ds.x, val_ds.y)
        if val < best:
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return {"val_mse": best, "test_mse": evaluate(model, test_ds.x, test_ds.y), "train_s": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, nargs="+", default=[4, 6, 8])
    p.add_argument("--lag", type=int, default=128)
    p.add_argument("--horizon", type=int, default=32)
    p.add_argument("--root-radius", type=float, nargs=2, default=[0.9, 0.98],
                   help="range of the moduli of the AR roots (closer to 1: predictable further out)")
    p.add_argument("--size", type=int, default=2000, help="training windows (val/test: size // 4)")
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--st-d-model", type=int, default=32)
    p.add_argument("--st-kernels", type=int, default=8)
    p.add_argument("--s4d-d-model", type=int, default=24)
    p.add_argument("--s4d-layers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--s4d-epochs", type=int, default=None, help="epochs for S4D (default: --epochs)")
    p.add_argument("--models", nargs="+", default=["spacetime", "s4d"], choices=["spacetime", "s4d"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for order in args.orders:
        seed = args.seed + order
        data = [ARProcess(split, order=order, lag=args.lag, horizon=args.horizon, size=args.size,
                           root_radius=tuple(args.root_radius), seed=seed)
                for split in ("train", "val", "test")]
        test = data[2]
        oracle = ((test.oracle_forecast(test.x) - test.y.double()) ** 2).mean().item()
        baselines = {"zero": (test.y**2).mean().item(), "last value": ((test.x[:, -1:] - test.y) ** 2).mean().item()}
        phi = [round(v, 4) for v in test.coefficients.tolist()]
        print(f"AR({order}) phi={phi} oracle test MSE {oracle:.4f} (expected {test.oracle_mse().mean():.4f}); "
              + ", ".join(f"{k} {v / oracle:.2f}x" for k, v in baselines.items()), flush=True)
        for kind in args.models:
            torch.manual_seed(seed)
            model = build(kind, args, args.lag, args.horizon)
            n_params = sum(q.numel() for q in model.parameters() if q.requires_grad)
            epochs = args.s4d_epochs if kind == "s4d" and args.s4d_epochs else args.epochs
            result = train(model, data, args, seed, epochs)
            row = {"order": order, "model": kind, "params": n_params, "epochs": epochs, "oracle_mse": oracle, **result,
                   "ratio": result["test_mse"] / oracle, "coefficients": phi,
                   "captured": (baselines["zero"] - result["test_mse"]) / (baselines["zero"] - oracle),
                   **{f"{k} ratio": v / oracle for k, v in baselines.items()}}
            rows.append(row)
            print(f"  {kind:9s} params {n_params:6d}  test MSE {result['test_mse']:.4f}  / oracle = {row['ratio']:.3f}"
                  f"  captured {row['captured']:.3f}  ({result['train_s']:.0f} s)", flush=True)

    print("\n| p | model | params | epochs | test MSE | oracle MSE | MSE / oracle | captured | zero / oracle | last value / oracle | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['order']} | {r['model']} | {r['params']} | {r['epochs']} | {r['test_mse']:.4f} | {r['oracle_mse']:.4f} | "
              f"{r['ratio']:.3f} | {r['captured']:.3f} | {r['zero ratio']:.2f} | {r['last value ratio']:.2f} | {r['train_s']:.0f} |")
    if args.json:
        meta = {"args": vars(args), "torch": torch.__version__, "machine": platform.machine(),
                "threads": torch.get_num_threads()}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
