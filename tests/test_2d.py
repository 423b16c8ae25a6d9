"""2D: micrographs of height maps under several lightings, and the 2D signature methods."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ribin.errors import InputError
from ribin.io.casing import Casing
from ribin.signatures import DEFAULT_ILLUMINATION_2D, ILLUMINATION_METHODS, extract
from ribin.synthetic import _fields
from ribin.synthetic.lighting import LIGHTING_MODELS, render_micrograph

FADUL = Path(__file__).resolve().parents[2] / "shared" / "data" / "fadul_subset"


def _surface(seed: int = 3, size: int = 320, pixel: float = 6.25) -> np.ndarray:
    """A rough disc with a round hole in the middle (NaN outside, like a cropped scan)."""
    rng = np.random.default_rng(seed)
    heights = 2.0 * _fields.smooth_noise(rng, (size, size), 3.0)
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    r = np.hypot(xx, yy)
    heights[(r > 0.48 * size) | (r < 0.1 * size)] = np.nan
    return heights


@pytest.mark.parametrize("model", LIGHTING_MODELS)
def test_render_micrograph_is_seeded_and_in_range(model):
    heights = _surface()
    a, lit_a = render_micrograph(heights, 6.25, model, np.random.default_rng(5))
    b, lit_b = render_micrograph(heights, 6.25, model, np.random.default_rng(5))
    c, _ = render_micrograph(heights, 6.25, model, np.random.default_rng(6))
    assert a.dtype == np.float32 and a.shape == heights.shape
    assert np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1
    assert np.array_equal(a, b) and lit_a == lit_b
    assert lit_a["model"] == model
    assert not np.array_equal(a, c)


def test_oblique_light_direction_changes_the_image():
    heights = _surface()
    fixed = {"exposure": 1.0, "defocus_um": 0.0, "tilt_deg": 0.0, "elevation_deg": 30.0}
    east, _ = render_micrograph(
        heights, 6.25, "oblique", np.random.default_rng(1), azimuth_deg=0, **fixed
    )
    north, _ = render_micrograph(
        heights, 6.25, "oblique", np.random.default_rng(1), azimuth_deg=90, **fixed
    )
    west, _ = render_micrograph(
        heights, 6.25, "oblique", np.random.default_rng(1), azimuth_deg=180, **fixed
    )
    inside = np.isfinite(heights)

    def corr(x, y):
        return np.corrcoef(x[inside], y[inside])[0, 1]

    # Opposite lights see opposite flanks; a quarter turn sees other flanks.
    assert corr(east, west) < 0.2
    assert corr(east, north) < corr(east, east)


def test_render_micrograph_rejects_bad_input():
    heights = _surface()
    with pytest.raises(ValueError, match="lighting model"):
        render_micrograph(heights, 6.25, "flash", np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown lighting parameters"):
        render_micrograph(heights, 6.25, "ring", np.random.default_rng(0), colour=1.0)
    with pytest.raises(ValueError, match="no finite value"):
        render_micrograph(np.full((8, 8), np.nan), 6.25, "ring", np.random.default_rng(0))


def _casing(image: np.ndarray, mask: np.ndarray) -> Casing:
    return Casing(
        surface=np.where(mask, image, np.nan).astype(np.float32),
        modality="2d",
        pixel_size_um=6.25,
        mask=mask,
        source="rendered.png",
    )


def test_every_2d_method_extracts_and_is_recorded():
    heights = _surface()
    mask = np.isfinite(heights)
    image, _ = render_micrograph(heights, 6.25, "ring", np.random.default_rng(2))
    ids = set()
    for method in ILLUMINATION_METHODS:
        sig = extract(_casing(image, mask), illumination=method).breech_face
        assert sig.params["illumination_method"] == method
        assert np.isfinite(sig.surface).any()
        valid = sig.surface[np.isfinite(sig.surface)]
        assert np.sqrt(np.mean(valid**2)) == pytest.approx(1.0, rel=1e-3)
        ids.add(sig.id)
    assert len(ids) == len(ILLUMINATION_METHODS)
    default = extract(_casing(image, mask)).breech_face
    assert default.params["illumination_method"] == DEFAULT_ILLUMINATION_2D
    with pytest.raises(InputError, match="unknown 2D illumination method"):
        extract(_casing(image, mask), illumination="hdr")


def test_saturated_and_small_2d_breech_faces_warn():
    from ribin.signatures import pair_warnings

    heights = _surface(size=360)
    mask = np.isfinite(heights)
    image, _ = render_micrograph(heights, 6.25, "ring", np.random.default_rng(4), exposure=1.0)
    clean = extract(_casing(image, mask))
    assert clean.breech_face.quality["saturated_fraction"] < 0.02
    assert not any("saturated" in w or "usable" in w for w in clean.warnings)
    assert pair_warnings(clean.breech_face, clean.breech_face) == ()

    glare = image.copy()
    glare[60:140, 60:200] = 1.0  # a glint over part of the breech face
    hot = extract(_casing(glare, mask))
    assert hot.breech_face.quality["saturated_fraction"] > 0.02
    assert any("saturated (glare)" in w for w in hot.warnings)
    assert any(
        w.startswith("B:") and "saturated" in w
        for w in pair_warnings(clean.breech_face, hot.breech_face)
    )

    small_heights = _surface(size=200)
    small_mask = np.isfinite(small_heights)
    small_image, _ = render_micrograph(small_heights, 6.25, "ring", np.random.default_rng(4))
    small = extract(_casing(small_image, small_mask))
    assert small.breech_face.quality["valid_area_mm2"] < 2.0
    assert any("rest on a small area" in w for w in small.warnings)
    assert any(
        w.startswith("A:") and "mm^2" in w
        for w in pair_warnings(small.breech_face, clean.breech_face)
    )

    other = extract(_casing(image, mask), illumination="lcn").breech_face
    assert any("2D methods differ" in w for w in pair_warnings(clean.breech_face, other))


def test_3d_signatures_carry_no_2d_fields():
    from ribin.signatures import pair_warnings

    heights = _surface()
    casing = Casing(
        surface=heights,
        modality="3d",
        pixel_size_um=6.25,
        mask=np.isfinite(heights),
        source="s.x3p",
    )
    sig = extract(casing).breech_face
    assert "illumination_method" not in sig.params and sig.params["illumination"] is None
    assert "saturated_fraction" not in sig.quality
    assert pair_warnings(sig, sig) == ()


def test_integrate_recovers_the_shared_long_wavelength_marks():
    # Two casings of one firearm: shared marks at long wavelengths, each casing's own
    # roughness at short ones (as on the Fadul breech faces, where the slopes, and so the
    # lit image, are dominated by the casing's own roughness).
    size = 320
    rng = np.random.default_rng(11)
    shared = 3.0 * _fields.smooth_noise(rng, (size, size), 10.0)
    outline = np.isfinite(_surface(size=size))
    sigs = {}
    for method in ("log", "integrate"):
        sigs[method] = []
        for shot in (1, 2):
            own = 0.4 * _fields.smooth_noise(np.random.default_rng(100 + shot), (size, size), 1.0)
            heights = np.where(outline, shared + own, np.nan)
            image, _ = render_micrograph(heights, 6.25, "ring", np.random.default_rng(shot))
            sigs[method].append(extract(_casing(image, outline), illumination=method).breech_face)

    def corr(a, b):
        both = np.isfinite(a) & np.isfinite(b)
        return np.corrcoef(a[both], b[both])[0, 1]

    a, b = sigs["log"]
    c, d = sigs["integrate"]
    assert a.surface.shape == b.surface.shape and c.surface.shape == d.surface.shape
    assert corr(c.surface, d.surface) > corr(a.surface, b.surface) + 0.1


def test_smooth_methods_raise_the_breech_face_short_cutoff_only():
    from ribin.signatures import REGION_DEFAULTS, SMOOTH_CUTOFF_UM

    heights = _surface()
    mask = np.isfinite(heights)
    image, _ = render_micrograph(heights, 6.25, "ring", np.random.default_rng(2))
    plain = extract(_casing(image, mask), illumination="log").breech_face
    smooth = extract(_casing(image, mask), illumination="log-smooth").breech_face
    assert plain.params["short_cutoff_um"] == REGION_DEFAULTS["breech_face"]["short_cutoff_um"]
    assert smooth.params["short_cutoff_um"] == SMOOTH_CUTOFF_UM > plain.params["short_cutoff_um"]
    assert "smooth" in smooth.params["illumination"]
    assert REGION_DEFAULTS["breech_face"]["short_cutoff_um"] == 16.0  # not changed in place

    def roughness(sig):
        v = sig.surface
        return float(np.nanmean(np.abs(np.diff(v, axis=1))))

    assert roughness(smooth) < roughness(plain)


def test_two_2d_breech_faces_are_compared_with_the_2d_defaults():
    from ribin.compare import DEFAULT_PARAMS, DEFAULT_PARAMS_2D, CMCParams, compare

    heights = _surface()
    mask = np.isfinite(heights)
    image, _ = render_micrograph(heights, 6.25, "ring", np.random.default_rng(2))
    flat = extract(_casing(image, mask)).breech_face
    measured = extract(
        Casing(surface=heights, modality="3d", pixel_size_um=6.25, mask=mask, source="s.x3p")
    ).breech_face
    assert DEFAULT_PARAMS_2D["breech_face"] != DEFAULT_PARAMS["breech_face"]
    sweep = CMCParams(angle_range_deg=(-3.0, 3.0))
    assert compare(flat, flat, sweep).params == sweep  # parameters given are kept
    assert compare(flat, flat).params == DEFAULT_PARAMS_2D["breech_face"]
    assert (
        compare(flat, flat, DEFAULT_PARAMS["breech_face"]).params
        == (DEFAULT_PARAMS_2D["breech_face"])
    )
    # Parameters equal to the 3D defaults but made by the caller are the caller's choice.
    assert compare(flat, flat, CMCParams()).params.corr_min == CMCParams().corr_min
    assert compare(measured, measured).params == DEFAULT_PARAMS["breech_face"]


def test_a_2d_search_records_the_2d_comparison_parameters():
    from ribin.compare import DEFAULT_PARAMS, DEFAULT_PARAMS_2D
    from ribin.shards import _cmc_params_2d

    heights = _surface()
    mask = np.isfinite(heights)
    image, _ = render_micrograph(heights, 6.25, "ring", np.random.default_rng(2))
    exhibit = extract(_casing(image, mask))
    recorded = _cmc_params_2d(exhibit, DEFAULT_PARAMS)
    assert recorded["cmc_params_2d"]["breech_face"]["corr_min"] == (
        DEFAULT_PARAMS_2D["breech_face"].corr_min
    )
    assert _cmc_params_2d(exhibit, DEFAULT_PARAMS, "2d") == recorded
    # searched against 3D exhibits (a modality filter): the 3D parameters, nothing to record
    assert _cmc_params_2d(exhibit, DEFAULT_PARAMS, "3d") == {}
    assert DEFAULT_PARAMS_2D["breech_face"].corr_min < DEFAULT_PARAMS["breech_face"].corr_min
    measured = Casing(surface=heights, modality="3d", pixel_size_um=6.25, mask=mask, source="s")
    assert _cmc_params_2d(extract(measured), DEFAULT_PARAMS) == {}


def test_whiten_divides_out_a_blur_of_the_image():
    # Defocus multiplies the image's spectrum by a smooth radial function; whitening divides
    # the image's own radial amplitude out, so two focus settings of one image come out
    # closer than they went in (not equal: the amplitude is smoothed over log frequency).
    from scipy import ndimage

    from ribin.preprocess import bandpass
    from ribin.signatures import _whiten

    field = _fields.smooth_noise(np.random.default_rng(8), (160, 160), 0.5)
    blurred = ndimage.gaussian_filter(field, 1.5)
    field[:12], blurred[:12] = np.nan, np.nan  # NaN stay NaN and do not spread
    sharp = bandpass(field, 12.5, 64.0, 250.0)
    soft = bandpass(blurred, 12.5, 64.0, 250.0)
    inside = np.isfinite(sharp)

    def corr(a, b):
        return np.corrcoef(a[inside], b[inside])[0, 1]

    white_sharp = _whiten(sharp, 12.5, 64.0, 250.0)
    white_soft = _whiten(soft, 12.5, 64.0, 250.0)
    assert np.array_equal(np.isfinite(white_sharp), inside)
    assert corr(white_sharp, white_soft) > 0.92
    assert corr(white_sharp, white_soft) > corr(sharp, soft) + 0.05
    # A gain does not change the whitened image.
    assert np.allclose(
        _whiten(3.0 * sharp, 12.5, 64.0, 250.0), white_sharp, atol=1e-5, equal_nan=True
    )


def test_rank_whiten_ignores_the_camera_response():
    # Any monotonic response (exposure, gamma, a saturating sensor) gives the same rank
    # signature; log only absorbs gain and gamma, not a saturating curve.
    from ribin.signatures import CLIP_HIGH, CLIP_LOW, WHITEN_CUTOFF_UM

    heights = _surface()
    mask = np.isfinite(heights)
    image, _ = render_micrograph(heights, 6.25, "ring", np.random.default_rng(2))
    clipped = (image <= CLIP_LOW) | (image >= CLIP_HIGH)
    curve = np.where(clipped, image, 0.8 * image / (image + 0.3)).astype(np.float32)
    sigs = {}
    for method in ("rank-whiten", "log-whiten"):
        a = extract(_casing(image, mask), illumination=method).breech_face
        b = extract(_casing(curve, mask), illumination=method).breech_face
        assert a.params["short_cutoff_um"] == WHITEN_CUTOFF_UM
        assert "whiten" in a.params["illumination"]
        sigs[method] = np.nanmax(np.abs(a.surface - b.surface))
    assert sigs["rank-whiten"] < 1e-4
    assert sigs["log-whiten"] > 1e-2


def test_2d_mates_under_different_lights_outscore_a_non_mate():
    # Two casings of one firearm (shared marks, each its own roughness), one ring-lit and
    # one under coaxial light with other focus and exposure; a third casing of another
    # firearm under the ring light. The default 2D method and comparison.
    from ribin.compare import compare

    size = 320
    outline = np.isfinite(_surface(size=size))
    marks = {
        g: 3.0 * _fields.smooth_noise(np.random.default_rng(g), (size, size), 8.0) for g in (1, 2)
    }
    shots = []
    for shot, (gun, model) in enumerate(((1, "ring"), (1, "coaxial"), (2, "ring"))):
        own = 0.5 * _fields.smooth_noise(np.random.default_rng(50 + shot), (size, size), 1.5)
        heights = np.where(outline, marks[gun] + own, np.nan)
        image, _ = render_micrograph(heights, 6.25, model, np.random.default_rng(shot))
        shots.append(extract(_casing(image, outline)).breech_face)
    mate = compare(shots[0], shots[1]).score
    assert compare(shots[1], shots[0]).score == mate
    assert mate > compare(shots[0], shots[2]).score
    assert mate > compare(shots[1], shots[2]).score


def test_rank_whiten_makes_its_firing_pin_as_log():
    from ribin.io import read_casing

    casing = read_casing(Path(__file__).resolve().parents[1] / "data/synthetic_casings/F01-1.png")
    ranked = extract(casing, illumination="rank-whiten")
    logged = extract(casing, illumination="log")
    assert ranked.firing_pin is not None and logged.firing_pin is not None
    assert np.array_equal(ranked.firing_pin.surface, logged.firing_pin.surface, equal_nan=True)
    assert ranked.firing_pin.params["illumination"].startswith("log,")
    assert ranked.breech_face.params["illumination"].startswith("rank, whiten")
    assert ranked.firing_pin.params["illumination_method"] == "rank-whiten"


def test_the_lighting_benchmark_holds_one_parameter_and_keeps_the_others(monkeypatch):
    # benchmarks/bench_2d_real.py --fix NAME=VALUE measures what one lighting parameter
    # costs: the held rendering must keep every other drawn parameter (else it would measure
    # a different draw) and differ from the drawn image where the held value differs.
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_2d_real

    size = 96
    heights = 2.0 * _fields.smooth_noise(np.random.default_rng(3), (size, size), 3.0)
    mask = np.ones((size, size), bool)
    mask[:8] = False
    casing = Casing(surface=heights, modality="3d", pixel_size_um=6.25, mask=mask, source="s")
    drawn, lit = bench_2d_real.rendered(casing, "coaxial", (21, 2, 0))
    held, held_lit = bench_2d_real.rendered(casing, "coaxial", (21, 2, 0), {"tilt_deg": 0.0})
    assert lit["tilt_deg"] > 0 and held_lit["tilt_deg"] == 0.0
    assert {k: v for k, v in held_lit.items() if k != "tilt_deg"} == {
        k: v for k, v in lit.items() if k != "tilt_deg"
    }
    inside = np.isfinite(drawn.surface)
    assert np.array_equal(inside, np.isfinite(held.surface)) and not inside[:8].any()
    assert not np.allclose(drawn.surface[inside], held.surface[inside], atol=1e-3)
    with pytest.raises(SystemExit):
        bench_2d_real.main(["--fix", "no_such=1"])
