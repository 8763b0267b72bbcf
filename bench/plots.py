"""Pictures of a benchmark run, written beside its JSON: latency distributions of every timed
record and throughput against its baselines. Drawn with matplotlib (the ``bench`` extra);
without it the run still writes its JSON and says why there is no picture."""

from __future__ import annotations

from pathlib import Path


def _label(r: dict) -> str:
    extra = r.get("env_id") or r.get("page") or ""
    return " ".join(p for p in (r["metric"], r.get("backend", ""), extra) if p)


def draw(records: list[dict], json_path: str) -> list[Path]:
    """Write ``<json stem>.latency.png`` and ``<json stem>.throughput.png``; returns the files."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; no display here or in CI
        import matplotlib.pyplot as plt
    except ImportError:
        print("[bench] no pictures: matplotlib is not installed (pip install -e '.[bench]' or uv sync --extra bench)")
        return []
    base = Path(json_path)
    stem = base.with_suffix("") if base.suffix == ".json" else base
    written = []

    timed = [r for r in records if r.get("_samples_ms")]
    if timed:
        fig, ax = plt.subplots(figsize=(11, 1.2 + 0.42 * len(timed)))
        data = [r["_samples_ms"] for r in timed]
        # box: quartiles; whiskers: p5..p95; dot: p99, so a slow tail shows without the outliers' clutter
        ax.boxplot(data, orientation="horizontal", whis=(5, 95), showfliers=False, widths=0.6,
                   medianprops={"color": "#c0392b", "linewidth": 2})
        ax.scatter([r["p99_ms"] for r in timed], range(1, len(timed) + 1), marker="o", s=14, color="#34495e",
                   zorder=3, label="p99")
        for i, r in enumerate(timed, start=1):
            if r.get("floor_p50_ms"):
                ax.scatter([r["floor_p50_ms"]], [i], marker="|", s=160, color="#27ae60", zorder=3,
                           label="floor p50" if i == 1 or "floor p50" not in ax.get_legend_handles_labels()[1] else None)
        ax.set_yticks(range(1, len(timed) + 1), [_label(r) for r in timed], fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale): box = quartiles, whiskers = p5..p95, red = p50")
        written.append(_finish(plt, fig, ax, "Latency distributions", Path(f"{stem}.latency.png")))

    rated = [r for r in records if r.get("per_s")]
    if rated:
        series = [("per_s", "through ROCK", "#2980b9"), ("baseline_per_s", "baseline (in-process)", "#95a5a6"),
                  ("floor_per_s", "floor", "#27ae60")]
        series = [s for s in series if any(r.get(s[0]) for r in rated)]
        fig, ax = plt.subplots(figsize=(11, 1.2 + 0.5 * len(rated) * len(series) / 1.5))
        height = 0.8 / len(series)
        for k, (key, name, color) in enumerate(series):
            ys = [i + k * height for i in range(len(rated))]
            ax.barh(ys, [r.get(key) or 0 for r in rated], height=height, color=color, label=name)
        ax.set_yticks([i + height * (len(series) - 1) / 2 for i in range(len(rated))],
                      [_label(r) for r in rated], fontsize=8)
        ax.set_xscale("log")
        smallest = min(r.get(key) for r in rated for key, _, _ in series if r.get(key))
        ax.set_xlim(left=smallest / 3)  # log bars need a floor well below the shortest one
        ax.set_xlabel("per second (log scale)")
        written.append(_finish(plt, fig, ax, "Throughput against baselines measured in the same run",
                               Path(f"{stem}.throughput.png")))
    return written


def _finish(plt, fig, ax, title: str, path: Path) -> Path:
    """The charts' shared layout (rows top down, a grid, the legend outside), saved to ``path``."""
    ax.invert_yaxis()
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
