"""One picture per nodule for a person to check: its central slice in a lung window,
upscaled, the contour (not a filled blob, so the tissue under it stays visible), the
long and short axes with their lengths in mm, and the probability; every label inside
the image.

"Central slice" is the slice of the long axis (where the nodule is widest, which is
where a radiologist measures it).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage import measure as skmeasure

__all__ = ['LUNG_WINDOW_HU', 'render_nodule_png']

#: Lung window (level -600, width 1500 HU): how radiologists read nodules.
LUNG_WINDOW_HU: tuple[float, float] = (-1350.0, 150.0)
_OUT_PX = 480          # longer side of the picture
_MIN_FOV_MM = 40.0     # smallest field of view around a nodule
_CONTOUR = (255, 220, 0)
_LONG = (255, 64, 64)
_SHORT = (64, 200, 255)


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill, font,
           size: tuple[int, int]) -> None:
    """Text on a dark box, moved so that the box stays inside the image."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 6, bottom - top + 6
    x = min(max(2.0, xy[0]), size[0] - w - 2)
    y = min(max(2.0, xy[1]), size[1] - h - 2)
    draw.rectangle((x, y, x + w, y + h), fill=(0, 0, 0))
    draw.text((x + 3 - left, y + 3 - top), text, fill=fill, font=font)


def render_nodule_png(slice_hu: np.ndarray, mask: np.ndarray, spacing_xy: tuple[float, float],
                      long_axis: tuple[tuple[float, float], tuple[float, float]],
                      short_axis: tuple[tuple[float, float], tuple[float, float]] | None,
                      long_axis_mm: float, short_axis_mm: float, probability: float,
                      nodule_id: int, z_index: int, slice_range: tuple[int, int]) -> bytes:
    """Draw one nodule on its slice and encode it as PNG.

    Args:
        slice_hu: The slice in HU ``(rows, cols)``.
        mask: bool ``(rows, cols)``, the nodule on this slice.
        spacing_xy: Pixel size (x, y) mm; the picture has square mm pixels.
        long_axis: End points ``((row, col), (row, col))`` on this slice.
        short_axis: End points, or ``None`` (a one-pixel nodule has none).
        long_axis_mm: Length drawn next to the long axis.
        short_axis_mm: Length drawn next to the short axis.
        probability: The nodule's probability.
        nodule_id: Its id in ``nodules.csv``.
        z_index: This slice's index.
        slice_range: First and last slice of the nodule.

    Returns:
        The PNG file's bytes.
    """
    rows, cols = slice_hu.shape
    sx, sy = float(spacing_xy[0]), float(spacing_xy[1])
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError(f'nodule {nodule_id}: empty mask on slice {z_index}')
    cy, cx = (ys.min() + ys.max()) / 2.0, (xs.min() + xs.max()) / 2.0
    extent_mm = max((ys.max() - ys.min() + 1) * sy, (xs.max() - xs.min() + 1) * sx)
    fov_mm = max(_MIN_FOV_MM, 3.0 * extent_mm)
    half_r, half_c = int(np.ceil(fov_mm / 2 / sy)), int(np.ceil(fov_mm / 2 / sx))
    r0, r1 = max(0, int(cy) - half_r), min(rows, int(cy) + half_r + 1)
    c0, c1 = max(0, int(cx) - half_c), min(cols, int(cx) + half_c + 1)
    lo, hi = LUNG_WINDOW_HU
    crop = np.clip((slice_hu[r0:r1, c0:c1].astype(np.float32) - lo) / (hi - lo), 0, 1)
    h_mm, w_mm = (r1 - r0) * sy, (c1 - c0) * sx
    scale = _OUT_PX / max(h_mm, w_mm)  # output px per mm
    out_w, out_h = max(1, round(w_mm * scale)), max(1, round(h_mm * scale))
    fx, fy = out_w / (c1 - c0), out_h / (r1 - r0)  # output px per input px
    grey = Image.fromarray((crop * 255 + 0.5).astype(np.uint8)).resize((out_w, out_h),
                                                                      Image.BICUBIC)
    picture = grey.convert('RGB')
    draw = ImageDraw.Draw(picture)

    def to_out(row: float, col: float) -> tuple[float, float]:
        return ((col - c0 + 0.5) * fx, (row - r0 + 0.5) * fy)

    padded = np.pad(mask[r0:r1, c0:c1], 1).astype(np.float32)
    for contour in skmeasure.find_contours(padded, 0.5):
        points = [to_out(r - 1 + r0, c - 1 + c0) for r, c in contour]
        draw.line(points + points[:1], fill=_CONTOUR, width=2)
    font, small = _font(16), _font(14)
    for axis, colour, name, length in ((long_axis, _LONG, 'long', long_axis_mm),
                                       (short_axis, _SHORT, 'short', short_axis_mm)):
        if axis is None:
            continue
        p, q = to_out(*axis[0]), to_out(*axis[1])
        draw.line((p, q), fill=colour, width=2)
        for end in (p, q):
            draw.ellipse((end[0] - 3, end[1] - 3, end[0] + 3, end[1] + 3), fill=colour)
        tip = max((p, q), key=lambda e: e[0])
        _label(draw, (tip[0] + 8, tip[1] - 10), f'{name} {length:.1f} mm', colour, small,
               picture.size)
    _label(draw, (4, 4), f'nodule {nodule_id}   p = {probability:.2f}', (255, 255, 255), font,
           picture.size)
    _label(draw, (4, out_h), f'slice {z_index} (nodule on {slice_range[0]}-{slice_range[1]})',
           (255, 255, 255), small, picture.size)
    bar_px = 10.0 * scale  # 10 mm scale bar, bottom right
    x1, y1 = out_w - 12, out_h - 14
    draw.line(((x1 - bar_px, y1), (x1, y1)), fill=(255, 255, 255), width=3)
    _label(draw, (x1 - bar_px, y1 - 30), '10 mm', (255, 255, 255), small, picture.size)
    buffer = io.BytesIO()
    picture.save(buffer, format='PNG')
    return buffer.getvalue()
