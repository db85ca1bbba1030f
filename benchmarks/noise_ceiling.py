"""How well can *any* selector do on the shipped measured data, given its measurement noise?

1. **Identical computations.** On a task whose requests come one at a time, static batching
   is plain generation, and with no shared prefix a prefix cache caches nothing
   (``metasel.domain.techniques.same_computation``; the collector runs the very same calls).
   Where the recorded best has m such twins, which of them was recorded fastest is chance,
   so no selector that has not seen the task's measurements picks it with probability
   above 1/m: the mean of 1/m over contexts bounds the expected top-1 of every model.
2. **Noise.** The differences between twins estimate the noise of a cell's recorded
   median, per device. With it: if every cell were measured again, how often would the
   re-measured best be the recorded best, and what regret would picking the recorded best
   have against the re-measurement?
3. **The active loop.** A loop that knows every computation's true mean (the mean of its
   twins' recorded medians) but, like any loop, sees only noisy measurements (true mean +
   N(0, sigma^2)) benchmarks the best mean first, then the highest expected improvement
   over what it has measured. Its regret after k benchmarks, against the noisy table it is
   replayed on, is what a perfect model could show in ``metasel evaluate``'s regret@k:
   with and without re-measuring twins (which can only gain by chance).

    python benchmarks/noise_ceiling.py [--draws 200]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def load() -> pd.DataFrame:
    """ok cells of cpu-v1 and gpu-v1 with their device and same-computation representative."""
    from metasel.domain.techniques import same_computation

    frames = []
    for ds in ("cpu-v1", "gpu-v1"):
        obs = pd.read_csv(ROOT / "datasets" / ds / "observations.csv")
        tasks = pd.read_csv(ROOT / "datasets" / ds / "tasks.csv").set_index("task_id")
        hw = pd.read_csv(ROOT / "datasets" / ds / "hardware.csv").set_index("hardware_id")
        methods = pd.read_csv(ROOT / "datasets" / ds / "methods.csv")
        catalog = {m: {"techniques": t} for m, t in zip(methods["method"], methods["techniques"])}
        obs = obs[obs["status"] == "ok"].copy()
        same = {t: same_computation({"spec": tasks.loc[t, "spec"]}, catalog) for t in obs["task_id"].unique()}
        obs["rep"] = [same[t][m] for t, m in zip(obs["task_id"], obs["method"])]
        obs["device"] = [json.loads(hw.loc[h, "specs"]).get("device", "cpu") for h in obs["hardware_id"]]
        obs["device"] = np.where(obs["device"] == "cpu", "cpu", "gpu")
        obs["y"] = np.log(obs["throughput_tok_s"])
        frames.append(obs)
    return pd.concat(frames, ignore_index=True)


def twin_sigma(obs: pd.DataFrame) -> dict[str, float]:
    """Noise of a cell's log median per device, from the spread of same-computation twins."""
    out = {}
    for device, sub in obs.groupby("device"):
        groups = sub.groupby(["task_id", "hardware_id", "rep"])["y"]
        dev = sub["y"] - groups.transform("mean")
        n = groups.transform("size")
        twins = n > 1
        # unbiased pooled variance: sum of squared deviations over (n - 1) per group
        dof = (groups.size() - 1).clip(lower=0).sum()
        out[device] = float(np.sqrt((dev[twins] ** 2).sum() / dof)) if dof else float("nan")
        print(f"{device}: noise of a cell's log median from {int(dof)} degrees of freedom of twins: sigma = {out[device]:.3f}")
    return out


def _expected_improvement(mean: np.ndarray, std: float, best: float) -> np.ndarray:
    from scipy.stats import norm

    z = (mean - best) / std
    return std * norm.pdf(z) + (mean - best) * norm.cdf(z)


def oracle_loop_regret(obs: pd.DataFrame, sigma: dict[str, float], *, draws: int, repeats: bool, k: int = 5,
                       seed: int = 0) -> np.ndarray:
    """Mean regret after 1..k benchmarks of a loop that knows the true means (see the docstring)."""
    rng = np.random.default_rng(seed)
    regrets = []
    for (_, _), grp in obs.groupby(["task_id", "hardware_id"]):
        rep = grp["rep"].to_numpy()
        mu = grp.groupby("rep")["y"].transform("mean").to_numpy()  # twins share one true mean
        s = sigma.get(grp["device"].iloc[0], 0.027)
        for _ in range(draws):
            y = mu + rng.normal(0.0, s, len(mu))  # the table the loop is replayed on
            order = [int(np.argmax(mu + 1e-9 * rng.random(len(mu))))]  # ties among twins broken at random
            while len(order) < min(k, len(mu)):
                rest = np.array([j for j in range(len(mu)) if j not in order
                                 and (repeats or rep[j] not in set(rep[order]))])
                if len(rest) == 0:
                    break
                ei = _expected_improvement(mu[rest], s, float(y[order].max()))
                order.append(int(rest[np.argmax(ei)]))
            got = np.maximum.accumulate(y[order])
            got = np.concatenate([got, np.full(k - len(got), got[-1])])
            regrets.append(1.0 - np.exp(got - y.max()))
    return np.mean(regrets, axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=200)
    args = ap.parse_args()
    obs = load()
    inv, sizes = [], []
    for (_, _), grp in obs.groupby(["task_id", "hardware_id"]):
        best_rep = grp["rep"].to_numpy()[int(np.argmax(grp["y"].to_numpy()))]
        m = int((grp["rep"] == best_rep).sum())
        sizes.append(m)
        inv.append(1.0 / m)
    print(f"{len(inv)} contexts; the recorded best has 0/1/2 same-computation twins in "
          f"{sizes.count(1)}/{sizes.count(2)}/{sizes.count(3)} of them")
    print(f"top-1 ceiling from identical computations alone (mean 1/m): {np.mean(inv):.3f}\n")
    sigma = twin_sigma(obs)
    rng = np.random.default_rng(0)
    print("\n| CPU sigma | GPU sigma | re-measured best = recorded best (top-1 ceiling) | regret of the recorded best |")
    print("|---|---|---|---|")
    for cpu_sigma in (0.027, sigma.get("cpu", 0.027)):
        agree, regret = [], []
        for (_, _), grp in obs.groupby(["task_id", "hardware_id"]):
            v = grp["y"].to_numpy()
            s = cpu_sigma if grp["device"].iloc[0] == "cpu" else sigma.get("gpu", cpu_sigma)
            pick = int(np.argmax(v))
            for _ in range(args.draws):
                again = v + rng.normal(0.0, s, len(v)) * np.sqrt(2)  # both measurements are noisy
                agree.append(pick == int(np.argmax(again)))
                regret.append(1.0 - np.exp(again[pick] - again.max()))
        print(f"| {cpu_sigma:.3f} | {sigma.get('gpu', float('nan')):.3f} | {np.mean(agree):.3f} | {np.mean(regret):.2%} |")
    print("\nA loop that knows every computation's true mean, replayed on a noisy table (regret after k benchmarks):")
    print("\n| CPU sigma | GPU sigma | re-measures twins | " + " | ".join(f"regret@{k}" for k in range(1, 6)) + " |")
    print("|---|---|---|" + "---|" * 5)
    for cpu_sigma in (0.027, sigma.get("cpu", 0.027)):
        for repeats in (True, False):
            floor = oracle_loop_regret(obs, {**sigma, "cpu": cpu_sigma}, draws=args.draws, repeats=repeats)
            print(f"| {cpu_sigma:.3f} | {sigma.get('gpu', float('nan')):.3f} | {'yes' if repeats else 'no'} | "
                  + " | ".join(f"{r:.2%}" for r in floor) + " |")


if __name__ == "__main__":
    main()
