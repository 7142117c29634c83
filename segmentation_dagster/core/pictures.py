"""Pictures of the segments, as PNG bytes: segment shares over time, a 2-D map of customers
coloured by segment, and the profile heat-map (segment x feature, z against the population).
matplotlib without a display (Agg); small images (one per materialisation, kept in its
metadata)."""

from __future__ import annotations

import io

import numpy as np
import polars as pl

DPI = 80


def _figure(width: float, height: float):  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(width, height), dpi=DPI)


def _png(plt, fig) -> bytes:  # noqa: ANN001
    out = io.BytesIO()
    fig.tight_layout()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def _nothing(what: str) -> bytes:
    """A small picture saying there is nothing to draw (e.g. every segment suppressed)."""
    plt, fig, ax = _figure(5, 1.2)
    ax.axis("off")
    ax.text(0.5, 0.5, f"{what}: nothing to show", ha="center", va="center")
    return _png(plt, fig)


def _label(segment_id: int, names: dict[int, str]) -> str:
    return f"{names.get(segment_id) or 'segment'} ({segment_id})"


def shares_over_time(shares: pl.DataFrame, names: dict[int, str]) -> bytes:
    """``shares``: snapshot_date, segment_id, share (one row per day and segment)."""
    if shares.is_empty():
        return _nothing("segment shares")
    plt, fig, ax = _figure(9, 4)
    for (sid,), part in shares.sort("snapshot_date").group_by("segment_id", maintain_order=True):
        ax.plot(part["snapshot_date"].to_list(), part["share"].to_list(),
                label=_label(int(sid), names))  # fmt: skip
    ax.set_ylabel("share of customers")
    ax.set_title("Segment shares by snapshot date")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.autofmt_xdate()
    return _png(plt, fig)


def segment_map(x: np.ndarray, segment_ids: np.ndarray, names: dict[int, str]) -> bytes:
    """Customers in the first two principal components of the model's space, by segment."""
    if len(x) < 3:
        return _nothing("segment map")
    from sklearn.decomposition import PCA

    plt, fig, ax = _figure(7, 5)
    pca = PCA(n_components=2, random_state=0)
    xy = pca.fit_transform(x)
    for sid in np.unique(segment_ids):
        m = segment_ids == sid
        ax.scatter(xy[m, 0], xy[m, 1], s=4, alpha=0.5, label=_label(int(sid), names))
    share = pca.explained_variance_ratio_
    ax.set_xlabel(f"PC1 ({share[0]:.0%} of the variance)")
    ax.set_ylabel(f"PC2 ({share[1]:.0%})")
    ax.set_title(f"{len(segment_ids):,} customers (sample) in the model's space")
    ax.legend(fontsize=7, markerscale=3, loc="center left", bbox_to_anchor=(1, 0.5))
    return _png(plt, fig)


def profile_heatmap(lift: pl.DataFrame, names: dict[int, str]) -> bytes:
    """``lift``: segment_id, feature, z (segment mean against the population, in sds)."""
    if lift.is_empty():
        return _nothing("profile heat-map")
    table = lift.pivot(on="feature", index="segment_id", values="z").sort("segment_id")
    features = [c for c in table.columns if c != "segment_id"]
    z = table.select(features).to_numpy().astype(float)
    plt, fig, ax = _figure(max(6, 0.45 * len(features) + 2), 0.45 * table.height + 2)
    image = ax.imshow(np.nan_to_num(z), cmap="RdBu_r", vmin=-2, vmax=2, aspect="auto")
    ax.set_xticks(range(len(features)), features, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(table.height), [_label(int(s), names) for s in table["segment_id"]],
                  fontsize=7)  # fmt: skip
    fig.colorbar(image, ax=ax, label="z vs all customers (clipped at ±2)")
    ax.set_title("Segment profiles")
    return _png(plt, fig)
