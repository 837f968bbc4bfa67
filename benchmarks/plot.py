"""The results figure (matplotlib, a benchmark-only dependency): six panels from ``Results``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.middleware_overhead import MIDDLEWARE
from benchmarks.report import Results

__all__ = ["render"]

_COLOURS = {"ours": "tab:blue", "official": "tab:orange"}
_STYLES = {"async": "-", "sync": "--", "sync-in-async": ":"}


def render(results: Results, path: Path) -> Path:
    """Write the figure to ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 2, figsize=(13, 14))
    _requests(axes[0][0], results)
    _ratios(axes[0][1], results)
    _framework(axes[1][0], results)
    _middleware(axes[1][1], results)
    _overhead(axes[2][0], results)
    _engine(axes[2][1], results)
    mode = "QUICK run (structure only)" if results.meta.get("quick") else "full run"
    fig.suptitle(
        f"inngest-mw vs inngest {results.meta.get('inngest_version', '?')}: {mode}, "
        f"Python {results.meta.get('python', '?')}, {results.meta.get('cpu_count', '?')} CPUs",
        fontsize=12,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _requests(ax: Any, results: Results) -> None:
    ax.set_title("1. µs per request vs memoized steps (no framework)")
    for variant, style in _STYLES.items():
        rows = sorted(
            (r for r in results.requests if r.variant == variant), key=lambda r: r.memoized
        )
        if not rows:
            continue
        xs = [r.memoized for r in rows]
        ax.plot(
            xs,
            [r.ours.median_us for r in rows],
            style,
            marker="o",
            color=_COLOURS["ours"],
            label=f"ours, {variant}",
        )
        ax.plot(
            xs,
            [r.official.median_us for r in rows],
            style,
            marker="s",
            color=_COLOURS["official"],
            label=f"official, {variant}",
        )
    ax.set_xscale("symlog", linthresh=10)
    ax.set_yscale("log")
    ax.set_xlabel("memoized steps (then one new step)")
    ax.set_ylabel("µs per request (median)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def _ratios(ax: Any, results: Results) -> None:
    ax.set_title("1. ours / official (lower is better)")
    for variant, style in _STYLES.items():
        rows = sorted(
            (r for r in results.requests if r.variant == variant), key=lambda r: r.memoized
        )
        if rows:
            ax.plot(
                [r.memoized for r in rows],
                [r.ratio for r in rows],
                style,
                marker="o",
                label=variant,
            )
    ax.plot([10], [0.5], "rv", markersize=10, label="target @10: <= 0.5")
    ax.plot([1000], [0.1], "r^", markersize=10, label="target @1000: <= 0.1")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("memoized steps")
    ax.set_ylabel("ratio")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def _framework(ax: Any, results: Results) -> None:
    ax.set_title("2. Through FastAPI + httpx.ASGITransport (async function)")
    rows = [f for f in results.framework if f.function == "async"]
    kinds = [
        ("floor", "tab:gray"),
        ("official", "tab:orange"),
        ("ours", "tab:blue"),
        ("ours bare", "tab:cyan"),
    ]
    width = 0.2
    for i, (kind, colour) in enumerate(kinds):
        values = [
            {"floor": f.floor, "official": f.official, "ours": f.ours, "ours bare": f.ours_bare}[
                kind
            ].median_us
            for f in rows
        ]
        ax.bar(
            [j + (i - 1.5) * width for j in range(len(rows))],
            values,
            width,
            label=kind,
            color=colour,
        )
    ax.set_xticks(range(len(rows)), [f"{f.memoized} memoized" for f in rows])
    ax.set_ylabel("µs per request (median)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def _middleware(ax: Any, results: Results) -> None:
    ax.set_title("3. N no-op middlewares on a 10-step request")
    for colour, style in (("async", "-"), ("sync", "--")):
        for overrides, marker in (("none", "o"), ("all", "s")):
            rows = sorted(
                (m for m in results.middleware if m.colour == colour and m.overrides == overrides),
                key=lambda m: m.count,
            )
            if rows:
                ax.plot(
                    [m.count for m in rows],
                    [m.ratio for m in rows],
                    style,
                    marker=marker,
                    label=f"{colour}, overriding {overrides}",
                )
    ax.axhline(1.05, color="red", linewidth=0.8, linestyle=":", label="+5%")
    ax.set_xscale("log")
    counts = sorted({m.count for m in results.middleware})
    if counts:
        ax.set_xticks(counts, [str(n) for n in counts])
    ax.set_yscale("log")
    ax.set_xlabel("middlewares")
    ax.set_ylabel("request time / no middleware")
    ax.grid(True, which="both", alpha=0.3)
    hooks = [h for h in results.hooks if h.colour in ("async", "sync")]
    if hooks:
        text = "µs per no-op hook call:\n" + "\n".join(
            f"{h.colour:5} {h.hook}: {h.per_call_us:.2f}" for h in hooks
        )
        ax.text(
            0.02,
            0.98,
            text,
            transform=ax.transAxes,
            va="top",
            fontsize=7,
            family="monospace",
            bbox={"facecolor": "white", "alpha": 0.8},
        )
    ax.legend(fontsize=8, loc="center right")


def _overhead(ax: Any, results: Results) -> None:
    ax.set_title("4. Shipped middleware on a 10-step request (lower is better)")
    names = [name for name in MIDDLEWARE if any(o.middleware == name for o in results.overhead)]
    width = 0.38
    for i, (function, colour) in enumerate((("async", "tab:blue"), ("sync", "tab:green"))):
        by_name = {o.middleware: o for o in results.overhead if o.function == function}
        xs = [j + (i - 0.5) * width for j, name in enumerate(names) if name in by_name]
        values = [by_name[name].added_us for name in names if name in by_name]
        bars = ax.bar(xs, values, width, label=f"{function} function", color=colour)
        ax.bar_label(
            bars, labels=[f"{by_name[n].ratio:.2f}x" for n in names if n in by_name], fontsize=7
        )
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("µs added per request (bar label: ratio to none)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def _engine(ax: Any, results: Results) -> None:
    engine = results.engine
    if engine is None:
        ax.set_axis_off()
        return
    ax.set_title(
        f"5. Engine: {engine.runs:,} runs of {engine.steps} steps, "
        f"{engine.runs_per_second:,.0f} runs/s"
    )
    for label, values in (
        ("event -> run completed", engine.run_ms),
        ("event -> first step", engine.first_step_ms),
        ("step -> next step (app)", engine.step_gap_ms),
        ("step duration (engine)", engine.step_ms),
    ):
        ordered = sorted(values)
        if ordered:
            ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)
    ax.set_xscale("symlog", linthresh=1)  # engine durations have 1 ms resolution, some are 0
    ax.set_xlabel("ms")
    ax.set_ylabel("fraction of samples (CDF)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
