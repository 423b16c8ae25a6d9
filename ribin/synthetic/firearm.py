"""Per-firearm marks: tool batches, breech-face toolmark textures and firing pins.

Everything here lives in the *breech frame*: micrometres, x right and y down as seen
looking at the breech face through the casing head, origin on the firing-pin axis. Textures
are sampled on a square *master grid* (default 3 um pixels) large enough for the primer,
the primer-cup gap and the play of the casing in the chamber; shots are rendered from it
at any pixel size (see :mod:`ribin.synthetic.shot`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft

from ribin.synthetic import _fields

#: Breech-face machining patterns a tool batch can leave.
PATTERNS = ("milling", "arcs", "cross_hatch", "granular")
#: Firing-pin shapes: round hemispherical, elliptical, Glock-style rectangular.
FP_SHAPES = ("round", "elliptical", "rectangular")

MASTER_PIXEL_UM = 3.0
#: Largest seat offset of the primer centre from the firing-pin axis (chamber play).
MAX_SEAT_OFFSET_UM = 220.0
#: Width of the primer-cup gap (flash gap between primer cup and pocket), range in um.
GAP_WIDTH_UM = (45.0, 90.0)


@dataclass(frozen=True)
class Caliber:
    """A cartridge: its name, primer type and primer diameter."""

    name: str
    primer: str
    primer_diameter_um: float


CALIBERS: dict[str, Caliber] = {
    c.name: c
    for c in (
        Caliber("9mm", "small pistol", 4450.0),
        Caliber(".40 S&W", "small pistol", 4450.0),
        Caliber(".45 ACP", "large pistol", 5330.0),
    )
}


@dataclass(frozen=True)
class FiringPin:
    """The firing-pin tip as it dents the primer (breech frame).

    Attributes
    ----------
    shape : str
        One of :data:`FP_SHAPES`.
    semi_axes_um : tuple of float
        Half length ``a`` along the pin's axis direction and half width ``b`` across it.
    angle_deg : float
        Direction of the ``a`` axis, counter-clockwise as seen in the image, from +x.
    corner_radius_um : float
        Corner radius of the rectangular (Glock-style) pin; 0 for the round ones.
    depth_um : float
        Depth of the impression below the primer face.
    aperture_margin_um : float
        The breech face has a hole (aperture) for the pin, wider than the pin by this
        margin; primer metal there never touches the breech face and carries no marks.
    """

    shape: str
    semi_axes_um: tuple[float, float]
    angle_deg: float
    corner_radius_um: float
    depth_um: float
    aperture_margin_um: float


@dataclass
class ToolBatch:
    """Slides machined by one tool in one run: they share a coarse (subclass) pattern."""

    batch_id: str
    caliber: Caliber
    fp_shape: str
    pattern: str
    subclass_share: float
    master_pixel_um: float
    texture: np.ndarray = field(repr=False)  # (M, M) float32, unit variance


@dataclass
class Firearm:
    """One firearm: the marks its breech face and firing pin leave on every casing.

    Attributes
    ----------
    firearm_id, batch : str, ToolBatch
        Identity and tool batch (batch-mates share part of the breech-face pattern).
    firing_pin : FiringPin
        Shape and size of the firing pin.
    breech_face : ndarray, shape (M, M), float32
        Breech-face relief in micrometres on the master grid (zero mean).
    fp_texture : ndarray, shape (M, M), float32
        Micro-texture of the firing-pin tip in micrometres (used inside the impression).
    drag_angle_deg : float
        Direction in which the pin drags across the primer when the slide unlocks.
    drag_profile : tuple of ndarray
        Striation profile across a drag mark (from the pin's edge defects).
    seat_offset_um : tuple of float
        Mean offset of the primer centre from the firing-pin axis in this chamber.
    """

    firearm_id: str
    batch: ToolBatch
    firing_pin: FiringPin
    breech_face: np.ndarray = field(repr=False)
    fp_texture: np.ndarray = field(repr=False)
    drag_angle_deg: float
    drag_profile: tuple[np.ndarray, np.ndarray] = field(repr=False)
    seat_offset_um: tuple[float, float]
    master_pixel_um: float

    @property
    def caliber(self) -> Caliber:
        """The caliber the firearm is chambered for."""
        return self.batch.caliber


def master_size(caliber: Caliber, master_pixel_um: float = MASTER_PIXEL_UM) -> int:
    """Side in pixels of the square master grid for `caliber` (even)."""
    half = caliber.primer_diameter_um / 2 + GAP_WIDTH_UM[1] + MAX_SEAT_OFFSET_UM + 120.0
    # A size the FFT handles fast: the textures are filtered in the Fourier domain.
    return sfft.next_fast_len(2 * int(np.ceil(half / master_pixel_um)), real=True) // 2 * 2


def _machining(
    rng: np.random.Generator, shape: tuple[int, int], pixel_um: float, pattern: str
) -> np.ndarray:
    """The coarse machining pattern of a tool batch, unit variance."""
    x, y = _fields.grid_um(shape, pixel_um)
    extent = max(shape) * pixel_um * 1.5
    angle = rng.uniform(0, 180)
    spacing = rng.uniform(45, 160)
    # Lines are never perfectly uniform along their length: the feed and the tool load vary.
    along = _fields.oriented_noise(rng, shape, 120 / pixel_um, 30 / pixel_um, angle)
    modulation = 1 + 0.35 * along

    def lines(theta: float, pitch: float) -> np.ndarray:
        a = np.deg2rad(theta)
        u = x * np.cos(a) - y * np.sin(a)
        profile = _fields.random_profile(rng, extent, pitch)
        return _fields.sample_profile(u, profile)

    if pattern == "milling":
        field_ = lines(angle, spacing) * modulation
    elif pattern == "arcs":
        # A fly cutter or end mill sweeps arcs around a centre a few millimetres away.
        radius = rng.uniform(3000, 9000)
        a = np.deg2rad(rng.uniform(0, 360))
        r = np.hypot(x - radius * np.cos(a), y + radius * np.sin(a))
        profile = _fields.random_profile(rng, 2 * (radius + extent), spacing)
        field_ = _fields.sample_profile(r - radius, profile) * modulation
    elif pattern == "cross_hatch":
        second = angle + rng.choice([-1, 1]) * rng.uniform(50, 90)
        field_ = lines(angle, spacing) + 0.7 * lines(second, spacing * rng.uniform(0.7, 1.3))
        field_ *= modulation
    elif pattern == "granular":
        field_ = _fields.smooth_noise(rng, shape, rng.uniform(18, 32) / pixel_um)
        field_ -= 1.5 * _fields.pits(rng, shape, 1e-4, 10 / pixel_um)
    else:
        raise ValueError(f"unknown breech-face pattern {pattern!r}; expected one of {PATTERNS}")
    # Every machined surface also carries coarse, random waviness of the tool batch.
    field_ = _fields.standardise(field_) + 0.5 * _fields.smooth_noise(rng, shape, 40 / pixel_um)
    return _fields.standardise(field_)


def make_batch(
    rng: np.random.Generator,
    batch_id: str,
    caliber: str = "9mm",
    fp_shape: str = "round",
    *,
    pattern: str | None = None,
    subclass_share: float | None = None,
    master_pixel_um: float = MASTER_PIXEL_UM,
) -> ToolBatch:
    """Draw a tool batch: its machining pattern and the share of it every slide inherits.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness; the batch is a pure function of its state.
    batch_id : str
        Name of the batch, e.g. ``"B1"``.
    caliber : str
        A key of :data:`CALIBERS`.
    fp_shape : str
        One of :data:`FP_SHAPES` (same model, same firing pin).
    pattern : str, optional
        One of :data:`PATTERNS`; drawn at random when omitted.
    subclass_share : float, optional
        Fraction of the breech-face variance shared by all slides of the batch
        (default: drawn in [0.25, 0.45]).
    master_pixel_um : float
        Pixel size of the master grid.

    Returns
    -------
    ToolBatch
    """
    if caliber not in CALIBERS:
        raise ValueError(f"unknown caliber {caliber!r}; expected one of {sorted(CALIBERS)}")
    if fp_shape not in FP_SHAPES:
        raise ValueError(f"unknown firing-pin shape {fp_shape!r}; expected one of {FP_SHAPES}")
    pattern = pattern or str(rng.choice(PATTERNS))
    share = float(rng.uniform(0.25, 0.45)) if subclass_share is None else float(subclass_share)
    size = master_size(CALIBERS[caliber], master_pixel_um)
    texture = _machining(rng, (size, size), master_pixel_um, pattern)
    return ToolBatch(
        batch_id, CALIBERS[caliber], fp_shape, pattern, share, master_pixel_um, texture
    )


def _firing_pin(rng: np.random.Generator, shape: str, caliber: Caliber) -> FiringPin:
    scale = caliber.primer_diameter_um / 4450.0
    if shape == "round":
        a = b = rng.uniform(480, 620) * scale
        corner = 0.0
    elif shape == "elliptical":
        a = rng.uniform(560, 700) * scale
        b = a / rng.uniform(1.25, 1.6)
        corner = 0.0
    else:  # Glock-style: a rectangle with rounded corners
        a = rng.uniform(560, 680) * scale
        b = rng.uniform(260, 330) * scale
        corner = rng.uniform(0.35, 0.6) * b
    return FiringPin(
        shape=shape,
        semi_axes_um=(float(a), float(b)),
        angle_deg=float(rng.uniform(0, 180)) if shape != "round" else 0.0,
        corner_radius_um=float(corner),
        depth_um=float(rng.uniform(50, 140)),
        aperture_margin_um=float(rng.uniform(120, 260)),
    )


def _fp_texture(rng: np.random.Generator, shape: tuple[int, int], pixel_um: float) -> np.ndarray:
    """Micro-texture of a firing-pin tip: lathe rings around its axis plus random wear."""
    x, y = _fields.grid_um(shape, pixel_um)
    r = np.hypot(x, y)
    rings = _fields.sample_profile(r, _fields.random_profile(rng, 4000, rng.uniform(8, 20)))
    wear = _fields.smooth_noise(rng, shape, rng.uniform(4, 10) / pixel_um)
    gouges = _fields.scratches(rng, shape, pixel_um, 6, (100, 500), (8, 20))
    tex = 0.8 * rings + wear - 1.5 * _fields.standardise(gouges)
    return (rng.uniform(0.4, 0.9) * _fields.standardise(tex)).astype(np.float32)


def make_firearm(
    rng: np.random.Generator,
    batch: ToolBatch,
    firearm_id: str = "F01",
    *,
    amplitude_um: float | None = None,
) -> Firearm:
    """Draw one firearm of a tool batch: its breech face, firing pin and chamber play.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness; the firearm is a pure function of its state and `batch`.
    batch : ToolBatch
        The tool batch the slide comes from (caliber, pin shape, shared pattern).
    firearm_id : str
        Name of the firearm, e.g. ``"F03"``.
    amplitude_um : float, optional
        Standard deviation of the breech-face relief (default: drawn in [2.0, 3.2] um).

    Returns
    -------
    Firearm
        Breech-face relief: ``sqrt(s) * batch + sqrt(1 - s) * individual`` with
        ``s = batch.subclass_share``, scaled to `amplitude_um`.
    """
    pix = batch.master_pixel_um
    shape = batch.texture.shape
    # Individual marks: the same tool family at another phase (wear, re-setting), granular
    # finishing at medium and fine scales, a few scratches and pits.
    angle = rng.uniform(0, 180)
    x, y = _fields.grid_um(shape, pix)
    a = np.deg2rad(angle)
    striae = _fields.sample_profile(
        x * np.cos(a) - y * np.sin(a),
        _fields.random_profile(rng, max(shape) * pix * 1.5, rng.uniform(20, 50), fine_um=4.0),
    )
    striae *= 0.5 + 0.5 * _fields.smooth_noise(rng, shape, 150 / pix)
    medium = _fields.smooth_noise(rng, shape, rng.uniform(24, 40) / pix)
    fine = _fields.smooth_noise(rng, shape, rng.uniform(4, 8) / pix)
    coarse = _fields.smooth_noise(rng, shape, rng.uniform(35, 70) / pix)
    grooves = _fields.scratches(rng, shape, pix, int(rng.integers(6, 16)), (300, 2000), (12, 40))
    # Pits in the breech face print as bumps on the primer, burrs as dents: sparse blobs
    # of both signs give the heavy tails of real scans.
    bumps = _fields.pits(rng, shape, 6e-5, rng.uniform(7, 14) / pix)
    dents = _fields.pits(rng, shape, 6e-5, rng.uniform(7, 14) / pix)
    individual = (
        0.4 * striae + medium + 0.1 * fine + 0.8 * coarse - 0.8 * grooves + 2.5 * (bumps - dents)
    )
    individual = _fields.standardise(individual)
    s = batch.subclass_share
    relief = np.sqrt(s) * batch.texture + np.sqrt(1 - s) * individual
    amplitude = float(rng.uniform(2.0, 3.2)) if amplitude_um is None else float(amplitude_um)
    breech_face = amplitude * _fields.standardise(relief)

    seat = rng.normal(0, 50, 2)
    return Firearm(
        firearm_id=firearm_id,
        batch=batch,
        firing_pin=_firing_pin(rng, batch.fp_shape, batch.caliber),
        breech_face=breech_face.astype(np.float32),
        fp_texture=_fp_texture(rng, shape, pix),
        drag_angle_deg=float(rng.uniform(0, 360)),
        drag_profile=_fields.random_profile(rng, 2000, rng.uniform(6, 15), fine_um=2.0),
        seat_offset_um=(float(seat[0]), float(seat[1])),
        master_pixel_um=pix,
    )


def fp_signed_distance(
    u: np.ndarray, v: np.ndarray, pin: FiringPin, grow_um: float = 0.0
) -> np.ndarray:
    """Approximate signed distance (um, negative inside) to the pin outline grown by `grow_um`.

    `u`, `v` are coordinates along and across the pin's ``a`` axis, in micrometres.
    """
    a, b = pin.semi_axes_um
    a, b = a + grow_um, b + grow_um
    if pin.shape == "rectangular":
        rc = pin.corner_radius_um + grow_um
        qx = np.abs(u) - (a - rc)
        qy = np.abs(v) - (b - rc)
        outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
        return outside + np.minimum(np.maximum(qx, qy), 0) - rc
    # Ellipse: radial distance scaled by the local radius, exact on the axes.
    rho = np.hypot(u / a, v / b)
    return (rho - 1) * np.minimum(a, b)


def fp_depth_profile(u: np.ndarray, v: np.ndarray, pin: FiringPin) -> np.ndarray:
    """Height (um, <= 0) of the firing-pin impression at pin coordinates `u`, `v`."""
    a, b = pin.semi_axes_um
    depth = pin.depth_um
    if pin.shape == "rectangular":
        sd = fp_signed_distance(u, v, pin)
        wall = 0.45 * b
        t = np.clip(-sd / wall, 0, 1)
        # Steep walls, a slightly domed floor (the Glock pin's flat nose is not quite flat).
        dome = 1 - 0.12 * np.clip((u / a) ** 2 + (v / b) ** 2, 0, 1)
        return (-depth * (t * t * (3 - 2 * t)) * dome).astype(np.float32)
    rho2 = (u / a) ** 2 + (v / b) ** 2
    # Spherical cap of the given depth over the outline, scaled to the ellipse.
    radius = (a * a + depth * depth) / (2 * depth)
    cap = np.sqrt(np.maximum(radius**2 - rho2 * a * a, 0)) - (radius - depth)
    return (-np.maximum(cap, 0)).astype(np.float32)


def smooth_step(x: np.ndarray, width: float) -> np.ndarray:
    """0 for ``x <= -width/2``, 1 for ``x >= width/2``, smooth in between."""
    t = np.clip(x / width + 0.5, 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)


__all__ = [
    "CALIBERS",
    "FP_SHAPES",
    "PATTERNS",
    "Caliber",
    "Firearm",
    "FiringPin",
    "ToolBatch",
    "fp_depth_profile",
    "fp_signed_distance",
    "make_batch",
    "make_firearm",
    "master_size",
    "smooth_step",
]
