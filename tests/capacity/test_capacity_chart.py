"""The crossover chart keeps every label inside the figure, whatever the phases' extent."""

from __future__ import annotations

import pytest
from matplotlib.text import Annotation

from capacity import Assumptions
from capacity.assumptions import with_value
from capacity.chart import figure
from capacity.model import cost_series

MARGIN = 2  # pixels between a label and the edge it must stay inside


@pytest.mark.parametrize("minutes", [0.5, 1.0, 3.0, 10.0])
@pytest.mark.parametrize("phase2_limit", [4, 16])
def test_every_label_is_inside_the_figure_and_its_axes(
    defaults: Assumptions, minutes: float, phase2_limit: int
) -> None:
    a = with_value(defaults, "gpu.phase2_max_gpus_per_pool", phase2_limit)
    fig = figure(cost_series(minutes, a), marker_tasks=50_000)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    drawn = fig.get_tightbbox(renderer)
    assert drawn.x0 >= 0 and drawn.y0 >= 0
    assert drawn.x1 <= fig.get_figwidth() and drawn.y1 <= fig.get_figheight()
    [ax] = fig.axes
    box = ax.get_window_extent(renderer)
    labels = [t for t in ax.texts if isinstance(t, Annotation) and t.get_text()]
    names = {t.get_text() for t in labels}
    assert {"Phase 1: MVP", "Phase 2: Growth"} <= names
    for label in labels:
        extent = label.get_window_extent(renderer)
        assert extent.x0 >= box.x0 + MARGIN, label.get_text()
        assert extent.x1 <= box.x1 - MARGIN, label.get_text()
        assert extent.y1 <= box.y1, label.get_text()
