"""Reading back the PNGs the package draws: decoded pixels, not the file's magic bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

LINE_BLUE = (31, 119, 180)  # matplotlib's first line colour ("C0")


def png_pixels(path: str | Path) -> np.ndarray:
    """The (height, width, 3) uint8 RGB pixels of a PNG file; raises when the file is not a PNG."""
    import matplotlib.image

    return (matplotlib.image.imread(Path(path), format="png")[..., :3] * 255).round().astype(np.uint8)


def share_of(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 30) -> float:
    """The fraction of ``pixels`` within ``tol`` of colour ``rgb`` in every channel."""
    return float((np.abs(pixels.astype(int) - np.array(rgb)) <= tol).all(axis=-1).mean())


def assert_plotted(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """``path`` decodes as a PNG of ``size`` (width, height) with axes, text and at least one line drawn in
    matplotlib's first colour: not blank, not an empty frame."""
    pixels = png_pixels(path)
    if size is not None:
        assert (pixels.shape[1], pixels.shape[0]) == size
    assert share_of(pixels, (255, 255, 255), tol=10) < 0.97  # axes, ticks and labels
    assert share_of(pixels, LINE_BLUE) > 0.001  # a drawn line
    return pixels
