"""The shapes generator as it was before images were rendered on demand (``workers/datasets.py`` at the
commit that introduced subset rendering), kept verbatim as the reference the new renderer must match
pixel for pixel: studies trained before the change stay comparable with those trained after it.

Do not edit the generator below; it is the "before" of a regression test.
"""

from __future__ import annotations

import numpy as np

SHAPES_CLASSES = ("circle", "square", "triangle", "cross", "ring", "horizontal_stripes", "vertical_stripes",
                  "checkerboard", "diagonal_stripes", "dots")
_SHAPES_CHUNK = 2048


def generate_shapes(n: int, res: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` shapes images ``(n, 3, res, res)`` uint8 and labels ``(n,)`` int64.

    Ten classes: five filled shapes (circle, square, triangle, cross, ring) and five textures
    (horizontal / vertical / diagonal stripes, checkerboard, dots) inside a patch. What makes it
    learnable but not trivial: foreground and background colours are random per sample (colour
    says nothing about the class), with a brightness gradient on the background, random position,
    scale and rotation, random texture period, a distractor line and blob behind the object, and
    per-sample Gaussian noise. Labels are exactly balanced (``arange(n) % 10``, shuffled).

    Vectorised over samples and pixels (a Python loop runs only over chunks and classes);
    deterministic for a given ``(n, res, seed)`` because every draw comes from one seeded PCG64
    stream in a fixed order.
    """
    rng = np.random.default_rng(seed)
    n_classes = len(SHAPES_CLASSES)
    labels = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    out = np.empty((n, 3, res, res), dtype=np.uint8)
    coords = (np.arange(res, dtype=np.float32) + 0.5) / res * 2.0 - 1.0  # pixel centres in [-1, 1]
    u = coords[None, None, :]  # (1, 1, W)
    v = coords[None, :, None]  # (1, H, 1)
    px = 2.0 / res  # one pixel in [-1, 1] units (antialiasing)
    for start in range(0, n, _SHAPES_CHUNK):
        lab = labels[start:start + _SHAPES_CHUNK]
        out[start:start + lab.size] = _render_chunk(rng, lab, u, v, px, res)
    return out, labels


#: One pixel of the 32 x 32 design in [-1, 1] units: sizes are given in these so that the set looks
#: the same (only sharper) when generated at a higher resolution.
_U32 = 2.0 / 32


def _col(a: np.ndarray) -> np.ndarray:
    """Per-sample parameter (B,) -> (B, 1, 1) for broadcasting over pixels."""
    return a.astype(np.float32)[:, None, None]


def _soft(field_px: np.ndarray) -> np.ndarray:
    """Coverage from a signed distance in pixels (negative inside): a one-pixel antialiased edge."""
    return np.clip(0.5 - field_px, 0.0, 1.0)


def _render_chunk(rng: np.random.Generator, lab: np.ndarray, u: np.ndarray, v: np.ndarray,
                  px: float, res: int) -> np.ndarray:
    b = lab.size
    f32 = np.float32
    # --- colours: random background and foreground, kept apart so the object is visible --------
    bg = rng.uniform(0.0, 1.0, (b, 3)).astype(f32)
    fg = rng.uniform(0.0, 1.0, (b, 3)).astype(f32)
    for _ in range(16):  # vectorised rejection: redraw the foregrounds too close to their background
        close = np.linalg.norm(fg - bg, axis=1) < 0.45
        if not close.any():
            break
        fg[close] = rng.uniform(0.0, 1.0, (int(close.sum()), 3))
    grad = rng.uniform(-0.2, 0.2, (b, 2)).astype(f32)
    img = bg[:, :, None, None] + (_col(grad[:, 0]) * u + _col(grad[:, 1]) * v)[:, None]  # (B,3,H,W)

    # --- distractors behind the object: a thin line segment and a small blob ---------------------
    p0 = rng.uniform(-0.9, 0.9, (b, 2)).astype(f32)
    ang = rng.uniform(0.0, np.pi, b).astype(f32)
    half = rng.uniform(0.25, 0.7, b).astype(f32)
    width = rng.uniform(0.6, 1.3, b).astype(f32) * _U32
    line_col = rng.uniform(0.0, 1.0, (b, 3)).astype(f32)
    has_line = rng.uniform(size=b) < 0.7
    dx, dy = u - _col(p0[:, 0]), v - _col(p0[:, 1])
    along = np.clip(dx * _col(np.cos(ang)) + dy * _col(np.sin(ang)), -_col(half), _col(half))
    dist = np.sqrt((dx - along * _col(np.cos(ang))) ** 2 + (dy - along * _col(np.sin(ang))) ** 2)
    a_line = _soft((dist - _col(width) / 2) / px) * _col(has_line)
    img = img * (1 - a_line[:, None]) + line_col[:, :, None, None] * a_line[:, None]

    blob_c = rng.uniform(-0.85, 0.85, (b, 2)).astype(f32)
    blob_r = rng.uniform(1.5, 3.0, b).astype(f32) * _U32
    blob_col = rng.uniform(0.0, 1.0, (b, 3)).astype(f32)
    has_blob = rng.uniform(size=b) < 0.5
    r_blob = np.sqrt((u - _col(blob_c[:, 0])) ** 2 + (v - _col(blob_c[:, 1])) ** 2)
    a_blob = _soft((r_blob - _col(blob_r)) / px) * _col(has_blob)
    img = img * (1 - a_blob[:, None]) + blob_col[:, :, None, None] * a_blob[:, None]

    # --- the object --------------------------------------------------------------------------
    centre = rng.uniform(-0.3, 0.3, (b, 2)).astype(f32)
    scale = rng.uniform(0.38, 0.68, b).astype(f32)  # object radius, in [-1, 1] units
    theta_full = rng.uniform(0.0, 2 * np.pi, b)
    theta_small = rng.uniform(-0.26, 0.26, b)  # +-15 degrees: stripes keep their orientation
    is_texture = lab >= 5
    theta = np.where(is_texture, theta_small, theta_full).astype(f32)
    period = rng.uniform(3.5, 6.5, b).astype(f32) * _U32  # texture period: 3.5-6.5 pixels at 32 px
    diag_sign = np.where(rng.uniform(size=b) < 0.5, -1.0, 1.0).astype(f32)
    shade = rng.uniform(-0.12, 0.12, (b, 2)).astype(f32)  # lighting across the object

    cu, cv = u - _col(centre[:, 0]), v - _col(centre[:, 1])
    cos_t, sin_t = _col(np.cos(theta)), _col(np.sin(theta))
    xr = cu * cos_t + cv * sin_t  # rotated coordinates, [-1, 1] units
    yr = -cu * sin_t + cv * cos_t
    s = _col(scale)
    x, y = xr / s, yr / s  # object units: the object spans about [-1, 1]
    to_px = s / px  # object units -> pixels

    alpha = np.zeros((b, res, res), dtype=f32)
    for c in range(len(SHAPES_CLASSES)):
        m = lab == c
        if not m.any():
            continue
        xs, ys, tp = x[m], y[m], to_px[m]
        if c == 0:  # circle
            d = np.sqrt(xs**2 + ys**2) - 1.0
        elif c == 1:  # square
            d = np.maximum(np.abs(xs), np.abs(ys)) - 0.8
        elif c == 2:  # equilateral triangle, circumradius 1.1
            d = np.full_like(xs, -np.inf)
            for k in range(3):
                a = np.pi / 2 + k * 2 * np.pi / 3
                d = np.maximum(d, xs * np.cos(a) + ys * np.sin(a) - 0.55)
        elif c == 3:  # cross (plus sign)
            d = np.minimum(np.maximum(np.abs(xs) - 0.28, np.abs(ys) - 1.0),
                           np.maximum(np.abs(ys) - 0.28, np.abs(xs) - 1.0))
        elif c == 4:  # ring
            d = np.abs(np.sqrt(xs**2 + ys**2) - 0.72) - 0.25
        else:  # textures inside a square patch
            patch = _soft((np.maximum(np.abs(xs), np.abs(ys)) - 1.0) * tp)
            per = _col(period[m])
            xp, yp = xr[m], yr[m]  # textures use unscaled coordinates: period is in pixels
            two_pi = np.float32(2 * np.pi)
            if c == 5:
                t = np.sin(two_pi * yp / per)
            elif c == 6:
                t = np.sin(two_pi * xp / per)
            elif c == 7:
                t = np.sin(two_pi * xp / per) * np.sin(two_pi * yp / per)
            elif c == 8:
                t = np.sin(two_pi * (xp + _col(diag_sign[m]) * yp) / (per * np.float32(np.sqrt(2))))
            else:  # dots on a lattice
                t = (np.cos(two_pi * xp / per) + np.cos(two_pi * yp / per) - 0.9) / 2.0
            # sin slope near zero is 2*pi/period per unit -> value * period/(2*pi) is ~pixels
            alpha[m] = patch * np.clip(0.5 + t * (per / px) / (2 * np.pi), 0.0, 1.0)
            continue
        alpha[m] = _soft(d * tp)

    lighting = (_col(shade[:, 0]) * x + _col(shade[:, 1]) * y)[:, None] * (alpha[:, None] > 0)
    obj = fg[:, :, None, None] + lighting
    img = img * (1 - alpha[:, None]) + obj * alpha[:, None]

    # --- sensor noise ------------------------------------------------------------------------
    sigma = rng.uniform(0.02, 0.10, b).astype(f32)
    img = img + rng.standard_normal(img.shape, dtype=f32) * sigma[:, None, None, None]
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)

