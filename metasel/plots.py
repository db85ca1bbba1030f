"""PNG plots (matplotlib, headless)."""

from __future__ import annotations

from typing import Mapping, Sequence


def pyplot():
    """matplotlib's pyplot on the headless Agg backend (a clear error without matplotlib)."""
    from metasel.errors import require

    mpl = require("matplotlib", feature="--plot", extra="eval")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_suggest(result, task_name: str, hardware_name: str, path: str) -> None:
    """Predicted metric with 90% intervals per method; measured values as dots."""
    plt = pyplot()
    rows = result.rows
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    y = range(len(rows))
    pred = [r["predicted"] for r in rows]
    lo = [r["predicted"] - r["low90"] for r in rows]
    hi = [r["high90"] - r["predicted"] for r in rows]
    ax.errorbar(pred, list(y), xerr=[lo, hi], fmt="o", color="tab:blue", capsize=3, label="predicted (90% interval)")
    meas = [(r["measured"], i) for i, r in enumerate(rows) if r["measured"] is not None]
    if meas:
        ax.scatter([m for m, _ in meas], [i for _, i in meas], color="tab:red", zorder=3, label="measured")
    ax.set_yticks(list(y))
    ax.set_yticklabels([r["method"] for r in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(result.metric)
    ax.set_title(f"{task_name} on {hardware_name}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pareto(front, task_name: str, hardware_name: str, path: str) -> None:
    """Each feasible method at its two metrics (predicted medians with 90% intervals, measured
    values filled), the Pareto front joined and labelled."""
    plt = pyplot()
    x, y = front.x, front.y
    rows = [r for r in front.rows if r["feasible"]]
    fig, ax = plt.subplots(figsize=(7, 5))
    for measured, style in ((False, dict(fmt="o", mfc="white", color="tab:blue", label="predicted (90% interval)")),
                            (True, dict(fmt="o", color="tab:red", label="measured"))):
        pts = [r for r in rows if (r[f"{x}_measured"] and r[f"{y}_measured"]) == measured]
        if not pts:
            continue
        ax.errorbar([r[x] for r in pts], [r[y] for r in pts],
                    xerr=[[max(r[x] - r[f"{x}_low90"], 0) * (not r[f"{x}_measured"]) for r in pts],
                          [max(r[f"{x}_high90"] - r[x], 0) * (not r[f"{x}_measured"]) for r in pts]],
                    yerr=[[max(r[y] - r[f"{y}_low90"], 0) * (not r[f"{y}_measured"]) for r in pts],
                          [max(r[f"{y}_high90"] - r[y], 0) * (not r[f"{y}_measured"]) for r in pts]],
                    capsize=2, alpha=0.8, elinewidth=0.6, **style)
    on = sorted((r for r in rows if r["on_front"]), key=lambda r: r[x])
    if on:
        ax.plot([r[x] for r in on], [r[y] for r in on], color="black", lw=1, zorder=3, label="Pareto front")
        for i, r in enumerate(on):  # neighbours on the front alternate above and below, so labels do not overlap
            ax.annotate(r["method"], (r[x], r[y]), fontsize=7, xytext=(4, 4 if i % 2 == 0 else -11),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{task_name} on {hardware_name}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_pareto_panels(panels: Sequence[dict], x: str, y: str, path: str, *, title: str) -> None:
    """One panel per held-out context: every measured method (grey), the measured front (black),
    and metasel's predicted front: its methods' predicted medians with 90% intervals (hollow,
    blue), joined by a dotted line to what they measured (filled, blue)."""
    plt = pyplot()
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * max(cols, 2), 3.3 * rows), squeeze=False)
    for ax, p in zip(axes.flat, panels):
        meas = p["measured"]
        ax.scatter([v[0] for v in meas.values()], [v[1] for v in meas.values()], s=10, color="0.6", label="measured")
        on = sorted((meas[m] for m in p["measured_front"]), key=lambda v: v[0])
        ax.plot([v[0] for v in on], [v[1] for v in on], color="black", lw=1, marker="o", mfc="none", ms=7,
                label="measured front")
        for k, m in enumerate(p["front"]):
            (px, plo, phi), (py, qlo, qhi) = p["predicted"][m]
            ax.errorbar([px], [py], xerr=[[max(px - plo, 0)], [max(phi - px, 0)]],
                        yerr=[[max(py - qlo, 0)], [max(qhi - py, 0)]], fmt="o", mfc="white", color="tab:blue",
                        elinewidth=0.5, capsize=1.5, ms=4, label="predicted front (90%)" if k == 0 else None)
            if m in meas:
                ax.plot([px, meas[m][0]], [py, meas[m][1]], ls=":", lw=0.7, color="tab:blue")
                ax.scatter([meas[m][0]], [meas[m][1]], s=16, color="tab:blue", zorder=3,
                           label="its measured values" if k == 0 else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{p['task'][:40]}\n{p['hardware'][:44]}\nhypervolume ratio {p['hv_ratio']:.2f}", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.supxlabel(x, fontsize=8)
    fig.supylabel(y, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curve(curves: Mapping[str, Sequence[float]], title: str, ylabel: str, path: str,
               xlabel: str = "benchmarks run") -> None:
    """Lines of value against step (best-so-far, regret…)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in curves.items():
        ax.plot(range(1, len(values) + 1), list(values), marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_per_task(frame, path, title) -> None:
    """Per-task regret of a few strategies (columns of ``frame``), tasks sorted by the first."""
    plt = pyplot()
    frame = frame.sort_values(frame.columns[0])
    fig, ax = plt.subplots(figsize=(8, 4))
    for col in frame.columns:
        ax.plot(range(len(frame)), frame[col].to_numpy(), marker=".", linestyle="none", label=col)
    ax.set_xlabel("held-out task (sorted by metasel regret)")
    ax.set_ylabel("relative regret")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_title(f"{title}: per-task regret", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
