"""Synthetic product labels, genuine and counterfeit, as a gate camera sees them.

``render_sample(seed, kind)`` draws one label (brand logo, brand and product text,
microtext, details, a GS1 DataMatrix with the item ID and a colour-shifting film patch) in
the canonical layout of :mod:`edge_agent.vision.layout`, then photographs it under
random capture conditions, once per lighting angle. ``render_dataset(seed, n)`` renders a
mix of kinds. Everything is deterministic from the seed.
"""

from simulators.labels.config import RenderConfig
from simulators.labels.render import (
    LabelSample,
    normalise_item_id,
    render_dataset,
    render_label,
    render_sample,
    sample_seed,
)

__all__ = [
    "LabelSample",
    "RenderConfig",
    "normalise_item_id",
    "render_dataset",
    "render_label",
    "render_sample",
    "sample_seed",
]
