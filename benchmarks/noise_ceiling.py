"""How well can *any* selector do on the shipped measured data, given its measurement noise?

Estimates the noise of a cell's measured median from pairs of methods that run the same
computation at batch size 1 (static batching of one request is plain generation), per
device, then asks: if every cell were measured again, how often would the re-measured
best be the recorded best, and what regret would picking the recorded best have against
the re-measurement? That is the ceiling for top-1 and the floor for regret of a perfect
model of the true means, judged against noisy measurements.

    python benchmarks/noise_ceiling.py [--draws 200]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SAME = [("static_cache", "static_cache+static_batching"), ("baseline", "static_batching"),
        ("int8_dynamic", "int8_dynamic+static_batching")]


def load() -> pd.DataFrame:
    frames = []
    for ds in ("cpu-v1", "gpu-v1"):
        obs = pd.read_csv(ROOT / "datasets" / ds / "observations.csv")
        tasks = pd.read_csv(ROOT / "datasets" / ds / "tasks.csv").set_index("task_id")
        hw = pd.read_csv(ROOT / "datasets" / ds / "hardware.csv").set_index("hardware_id")
        obs = obs[obs["status"] == "ok"].copy()
        obs["batch"] = [tasks.loc[t, "spec"].split('"batch_size":')[1].split(",")[0] for t in obs["task_id"]]
        obs["device"] = ["cpu" if '"device":"cpu"' in hw.loc[h, "specs"].replace(" ", "") else "gpu" for h in obs["hardware_id"]]
        frames.append(obs)
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=200)
    args = ap.parse_args()
    obs = load()
    sigma = {}
    for device, sub in obs[obs["batch"].str.strip() == "1"].groupby("device"):
        piv = sub.pivot_table(index=["task_id", "hardware_id"], columns="method", values="throughput_tok_s")
        diffs = np.concatenate([np.log(piv[a] / piv[b]).dropna().to_numpy() for a, b in SAME if a in piv and b in piv])
        sigma[device] = float(np.std(diffs) / np.sqrt(2))
        print(f"{device}: noise of a cell's log median from {len(diffs)} same-computation pairs: sigma = {sigma[device]:.3f}")
    rng = np.random.default_rng(0)
    print("\n| CPU sigma | GPU sigma | re-measured best = recorded best (top-1 ceiling) | regret of the recorded best |")
    print("|---|---|---|---|")
    for cpu_sigma in (0.027, sigma.get("cpu", 0.027)):
        agree, regret = [], []
        for (_, _), grp in obs.groupby(["task_id", "hardware_id"]):
            v = np.log(grp["throughput_tok_s"].to_numpy())
            s = cpu_sigma if grp["device"].iloc[0] == "cpu" else sigma.get("gpu", cpu_sigma)
            pick = int(np.argmax(v))
            for _ in range(args.draws):
                again = v + rng.normal(0.0, s, len(v)) * np.sqrt(2)  # both measurements are noisy
                agree.append(pick == int(np.argmax(again)))
                regret.append(1.0 - np.exp(again[pick] - again.max()))
        print(f"| {cpu_sigma:.3f} | {sigma.get('gpu', float('nan')):.3f} | {np.mean(agree):.3f} | {np.mean(regret):.2%} |")


if __name__ == "__main__":
    main()
