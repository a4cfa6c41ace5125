"""Build cmu_small_region_pyramid.svs: the sample slide with the reduced levels scanners write.

``cmu_small_region.svs`` holds full resolution only, while a scanner's file
also holds reduced levels, and tissue is found on one of those. This writes
the sample again in Aperio's layout (baseline, thumbnail, reduced levels) with
two reduced levels, 1/2 and 1/4, each the mean of 2 x 2 pixels of the level
above. The baseline is the sample's pixels in its 240-pixel tiles, re-encoded
as JPEG at quality 90; its description (magnification, microns per pixel) is
the sample's. The output is deterministic for a given tifffile and imagecodecs.

Run from the repository's root::

    python workflows/data/make_slide_pyramid.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).parent
SOURCE = HERE / "cmu_small_region.svs"
TARGET = HERE / "cmu_small_region_pyramid.svs"
REDUCED_LEVELS = 2
TILE = (240, 240)
JPEG = {"compression": "jpeg", "compressionargs": {"level": 90}}


def halved(level: np.ndarray) -> np.ndarray:
    """The mean of each 2 x 2 block of pixels (an odd last row or column is dropped)."""
    rows, cols = level.shape[0] // 2 * 2, level.shape[1] // 2 * 2
    blocks = level[:rows, :cols].reshape(rows // 2, 2, cols // 2, 2, -1).astype(np.float32)
    return np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)


def main() -> None:
    with tifffile.TiffFile(SOURCE) as slide:
        baseline, thumbnail = slide.pages[0], slide.pages[1]
        levels = [baseline.asarray()]
        description = baseline.description
        small, small_description = thumbnail.asarray(), thumbnail.description
    for _ in range(REDUCED_LEVELS):
        levels.append(halved(levels[-1]))
    header = description.split("\r\n", 1)[0] + "\r\n"
    scratch = TARGET.with_suffix(".partial")
    with tifffile.TiffWriter(scratch) as out:
        common = {"photometric": "rgb", "metadata": None, **JPEG}
        out.write(levels[0], tile=TILE, description=description, **common)
        out.write(small, description=small_description, **common)
        for level in levels[1:]:
            shape = f"{level.shape[1]}x{level.shape[0]}"
            out.write(level, tile=TILE, description=f"{header}{shape} (240x240)", **common)
    scratch.replace(TARGET)
    with tifffile.TiffFile(TARGET) as check:
        found = [lv.shape for lv in check.series[0].levels]
    print(f"{TARGET}: levels {found}, {TARGET.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
