"""Files a user could upload, made for the tests and the benches (``bench/classroom.py``)."""

from __future__ import annotations

import io
import zipfile


def black_png_zip(count: int, mode: str = "RGB", side: int = 512) -> bytes:
    """A pixel bomb: ``count`` copies of one black ``side`` x ``side`` PNG in a zip (a 512x512
    RGB one is ~1 KB compressed and 768 KiB decoded; 1,000 of them: ~180 KB, 786 MB as held;
    2,500: a ~460 KB zip of 1.97 GB of pixels, just inside the upload budget)."""
    from PIL import Image

    image = io.BytesIO()
    Image.new(mode, (side, side)).save(image, format="PNG")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for index in range(count):
            zf.writestr(f"black/{index:04d}.png", image.getvalue())
    return archive.getvalue()
