"""Reading back the PNGs the package draws: decoded pixels, not the file's magic bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def png_pixels(path: str | Path) -> np.ndarray:
    """The (height, width, 3) uint8 RGB pixels of a PNG file; raises when the file is not a PNG."""
    import matplotlib.image

    return (matplotlib.image.imread(Path(path), format="png")[..., :3] * 255).round().astype(np.uint8)


def share_of(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 10) -> float:
    """The fraction of ``pixels`` within ``tol`` of colour ``rgb`` in every channel."""
    return float((np.abs(pixels.astype(int) - np.array(rgb)) <= tol).all(axis=-1).mean())


def coloured_share(pixels: np.ndarray) -> float:
    """The fraction of ``pixels`` in a colour (not white, grey or black): plotted lines and markers, whatever
    the style's colour cycle (Optuna's plots switch matplotlib to ggplot for the rest of the process)."""
    channels = pixels.astype(int)
    return float((channels.max(axis=-1) - channels.min(axis=-1) > 60).mean())


def assert_plotted(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """``path`` decodes as a PNG of ``size`` (width, height) with axes and text on it and lines drawn in
    colour: not blank, not an empty frame."""
    pixels = png_pixels(path)
    if size is not None:
        assert (pixels.shape[1], pixels.shape[0]) == size
    assert share_of(pixels, tuple(pixels[0, 0])) < 0.97, "one colour: a blank image"
    assert coloured_share(pixels) > 0.001, "no line drawn in colour"
    return pixels
