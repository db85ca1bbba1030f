"""Reports of an evaluation: the summary per strategy, the markdown tables, JSON and PNG files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from metasel.evaluation.harness import EvalResult



def summarise(result: EvalResult) -> dict[str, dict[str, float]]:
    """Per strategy: mean ± std over folds of each metric, gap closed, coverage, Wilcoxon p."""
    import pandas as pd
    from scipy.stats import norm, wilcoxon

    rows = pd.DataFrame(result.rows)
    out: dict[str, dict[str, float]] = {}
    by_context = rows.set_index(["fold", "task_id", "hardware_id"])

    def paired_p(name: str, col: str) -> float:
        """Wilcoxon p of metasel against ``name`` on ``col``, paired by context."""
        a, b = (by_context.loc[by_context.strategy == n, col] for n in ("metasel", name))
        a, b = a.align(b, join="inner")
        return float(wilcoxon(a, b, zero_method="zsplit").pvalue) if (a != b).any() else 1.0

    for name, sub in rows.groupby("strategy", sort=False):
        per_fold = sub.groupby("fold")[["top1", "regret", "ndcg3", "tau"]].mean()
        entry = {}
        for col in ("top1", "regret", "ndcg3", "tau"):
            entry[col] = float(sub[col].mean())
            entry[f"{col}_fold_std"] = float(per_fold[col].std(ddof=0)) if len(per_fold) > 1 else 0.0
        r_sbs = sub["sbs_regret"].mean()
        entry["gap_closed"] = float((r_sbs - sub["regret"].mean()) / r_sbs) if r_sbs > 0 else math.nan
        if "value" in sub and sub["value"].notna().all():
            # the field's measure: means of the metric's own values (PAR10 means for ASlib), the
            # single best chosen on the training folds, the oracle per context
            mean, sbs, vbs = (float(sub[c].mean()) for c in ("value", "sbs_value", "oracle_value"))
            entry["mean_value"], entry["sbs_mean_value"], entry["vbs_mean_value"] = mean, sbs, vbs
            entry["gap_closed_mean"] = (sbs - mean) / (sbs - vbs) if sbs != vbs else math.nan
        if name != "metasel":
            entry["wilcoxon_p"] = paired_p(name, "regret")
        curves = result.anytime.get(name)
        if curves:
            arr = np.asarray(curves)
            for k in range(arr.shape[1]):
                entry[f"regret@{k + 1}"] = float(arr[:, k].mean())
        if result.pooled_contexts and "regret_pooled" in sub:
            entry["top1_pooled"], entry["regret_pooled"] = float(sub["top1_pooled"].mean()), float(sub["regret_pooled"].mean())
            if name != "metasel":
                entry["wilcoxon_p_pooled"] = paired_p(name, "regret_pooled")
        if name in result.to_oracle:
            entry["to_oracle"] = float(np.mean(result.to_oracle[name]))
        out[name] = entry
    for name in ("random", "elect"):
        if name in result.anytime and name not in out:
            arr = np.asarray(result.anytime[name])
            out[name] = {f"regret@{k + 1}": float(arr[:, k].mean()) for k in range(arr.shape[1])}
            out[name]["to_oracle"] = float(np.mean(result.to_oracle[name]))
    if result.pooled_contexts:
        for name, curves in result.anytime_pooled.items():
            arr = np.asarray(curves)
            out.setdefault(name, {}).update({f"regret_pooled@{k + 1}": float(arr[:, k].mean()) for k in range(arr.shape[1])})
            if result.to_oracle_pooled.get(name):
                out[name]["to_oracle_pooled"] = float(np.mean(result.to_oracle_pooled[name]))
            out[name]["pooled_contexts"] = result.pooled_contexts
    if result.coverage:
        z = np.array([c["z"] for c in result.coverage])
        err = np.array([c["err"] for c in result.coverage])
        out["metasel"]["coverage50"] = float(np.mean([c["in50"] for c in result.coverage]))  # its own intervals
        out["metasel"]["coverage90"] = float(np.mean([c["in90"] for c in result.coverage]))
        out["metasel"]["coverage50_gaussian"] = float(np.mean(z < norm.ppf(0.75)))  # one std factor, Gaussian shape
        out["metasel"]["coverage90_gaussian"] = float(np.mean(z < norm.ppf(0.95)))
        out["metasel"]["log_rmse"] = float(np.sqrt(np.mean(err ** 2)))
    return out


def markdown(summary: dict[str, dict[str, float]], *, title: str, anytime_k: int = 5) -> str:
    def f(v, pct=False):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return f"{v:.1%}" if pct else f"{v:.3f}"

    def g(v):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"

    lines = [f"### {title}", "",
             "| strategy | top-1 | rel. regret | gap closed (regret) | mean value | gap closed (means) | NDCG@3 | "
             "Kendall τ | Wilcoxon p (vs metasel) | "
             + " | ".join(f"regret@{k}" for k in range(1, anytime_k + 1)) + " | benchmarks to oracle |",
             "|---|---|---|---|---|---|---|---|---|" + "---|" * anytime_k + "---|"]
    order = ["metasel"] + [k for k in summary if k != "metasel"]
    for name in order:
        s = summary[name]
        top1 = f"{f(s.get('top1'))} ± {f(s.get('top1_fold_std'))}" if "top1" in s else "-"
        reg = f"{f(s.get('regret'), True)} ± {f(s.get('regret_fold_std'), True)}" if "regret" in s else "-"
        lines.append(f"| {name} | {top1} | {reg} | {f(s.get('gap_closed'))} | {g(s.get('mean_value'))} | "
                     f"{f(s.get('gap_closed_mean'))} | {f(s.get('ndcg3'))} | {f(s.get('tau'))} | "
                     f"{f(s.get('wilcoxon_p'))} | " + " | ".join(f(s.get(f'regret@{k}'), True) for k in range(1, anytime_k + 1))
                     + f" | {f(s.get('to_oracle'))} |")
    ms = summary.get("metasel", {})
    if "regret_pooled" in ms:
        lines += ["", f"Identical computations as one ({ms['pooled_contexts']:.0f} contexts have methods that run the same "
                      "computation — static batching of one request, a prefix cache with no shared prefix; there each "
                      "measured twin counts with the mean of the twins' recorded values, so which twin was recorded "
                      "fastest by chance no longer decides the oracle):", "",
                  "| strategy | top-1 | rel. regret | Wilcoxon p (vs metasel) | "
                  + " | ".join(f"regret@{k}" for k in range(1, anytime_k + 1))
                  + " | benchmarks to oracle |", "|---|---|---|---|" + "---|" * anytime_k + "---|"]
        for name in order:
            s = summary[name]
            if not any(k.startswith("regret_pooled") for k in s):
                continue
            lines.append(f"| {name} | {f(s.get('top1_pooled'))} | {f(s.get('regret_pooled'), True)} | "
                         f"{f(s.get('wilcoxon_p_pooled'))} | "
                         + " | ".join(f(s.get(f'regret_pooled@{k}'), True) for k in range(1, anytime_k + 1))
                         + f" | {f(s.get('to_oracle_pooled'))} |")
    if "vbs_mean_value" in ms:
        lines += ["", f"Mean value of the metric per context (PAR10 for penalised runtimes): single best (chosen on "
                      f"each fold's training contexts) {ms['sbs_mean_value']:.4g}, oracle {ms['vbs_mean_value']:.4g}; "
                      "gap closed (means) = (single best − strategy) / (single best − oracle) of these means, "
                      "gap closed (regret) the same of mean relative regrets."]
    if "coverage90" in ms:
        lines += ["", f"metasel held-out cells: log-RMSE {ms['log_rmse']:.3f}, 50% interval coverage "
                      f"{ms['coverage50']:.1%}, 90% interval coverage {ms['coverage90']:.1%} (mean ± z·std, one "
                      f"std factor: {ms['coverage50_gaussian']:.1%} and {ms['coverage90_gaussian']:.1%})."]
    return "\n".join(lines) + "\n"


def stack_choices(choices: list[dict]) -> str:
    """What each stacked strategy chose on how many folds (its inner cross-validation's pick)."""
    from collections import Counter

    lines = []
    for name in dict.fromkeys(c["strategy"] for c in choices):
        count = Counter(c["chosen"] for c in choices if c["strategy"] == name)
        lines.append(f"{name} chose, by inner cross-validation on each fold's training contexts: "
                     + ", ".join(f"{k} on {v} fold(s)" for k, v in count.most_common()) + ".")
    return ("\n" + "\n".join(lines) + "\n") if lines else ""


def write_report(result: EvalResult, out_dir: str | Path, *, title: str, anytime_k: int = 5) -> dict:
    from metasel.plots import plot_curve, plot_per_task

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(result)
    md = markdown(summary, title=title, anytime_k=anytime_k)
    md += stack_choices(result.choices)
    md += f"\n{len({(r['task_id'], r['hardware_id']) for r in result.rows})} held-out (task, hardware) contexts; " \
          f"evaluation took {result.seconds:.0f}s.\n"
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps({"title": title, "metric": result.metric, "direction": result.direction,
                                                  "summary": summary, "per_context": result.rows,
                                                  "anytime_per_context": result.traces, "stack_choices": result.choices,
                                                  "seconds": result.seconds}, separators=(",", ":"), default=float))
    curves = {name: np.asarray(c).mean(axis=0).tolist() for name, c in result.anytime.items()}
    plot_curve(curves, f"{title}: anytime regret", "mean relative regret", str(out / "anytime.png"))
    import pandas as pd

    rows = pd.DataFrame(result.rows)
    per_task = rows.groupby(["strategy", "task_id"])["regret"].mean().unstack(0)
    keep = [c for c in ("metasel", "single_best", "knn", "regression_rf") if c in per_task]
    plot_per_task(per_task[keep], out / "per_task_regret.png", title)
    return summary
