"""In-memory signatures and exhibits: what extraction produces and the store keeps."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Region = Literal["breech_face", "firing_pin"]
Modality = Literal["3d", "2d"]
REGIONS: tuple[Region, ...] = ("breech_face", "firing_pin")
MODALITIES: tuple[Modality, ...] = ("3d", "2d")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal values give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def signature_id(
    kind: str, modality: str, surface: np.ndarray, pixel_size_um: float, params: dict
) -> str:
    """Content ID of a signature: SHA-256 of its surface bytes and shaping parameters.

    The ID depends on what was measured and how it was shaped, not on the file it came
    from, so the same exhibit ingested at two sites gets the same ID.

    Parameters
    ----------
    kind, modality : str
        Region name and ``"3d"`` or ``"2d"``.
    surface : ndarray, shape (M, N)
        Signature surface; hashed as little-endian float32 with every NaN made canonical.
    pixel_size_um : float
        Pixel size of ``surface`` in micrometres.
    params : dict
        JSON-serialisable parameters that produced the surface.

    Returns
    -------
    str
        64 hexadecimal characters.
    """
    surface = np.ascontiguousarray(surface, dtype="<f4")
    canonical = np.where(np.isnan(surface), np.float32(np.nan), surface).astype("<f4")
    header = canonical_json(
        {
            "kind": kind,
            "modality": modality,
            "shape": list(surface.shape),
            "pixel_size_um": float(pixel_size_um),
            "params": params,
        }
    )
    digest = hashlib.sha256()
    digest.update(header.encode())
    digest.update(b"\0")
    digest.update(canonical.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class Signature:
    """One region of one exhibit, ready to compare.

    Attributes
    ----------
    kind : {"breech_face", "firing_pin"}
    surface : ndarray of float32, shape (M, N)
        Levelled, band-pass filtered surface (3D, micrometres) or normalised image (2D),
        NaN outside the region.
    pixel_size_um : float
    modality : {"3d", "2d"}
    quality : dict
        Quality figures (valid-area fraction, noise, detection confidence, ...).
    params : dict
        Everything that produced the surface; part of the content ID.
    """

    kind: Region
    surface: np.ndarray
    pixel_size_um: float
    modality: Modality
    quality: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in REGIONS:
            raise ValueError(f"kind must be one of {REGIONS}, not {self.kind!r}")
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, not {self.modality!r}")
        surface = np.asarray(self.surface, dtype=np.float32)
        if surface.ndim != 2:
            raise ValueError(f"surface must be 2-D, not {surface.ndim}-D")
        surface.setflags(write=False)
        object.__setattr__(self, "surface", surface)

    @property
    def id(self) -> str:
        """Content ID (see :func:`signature_id`)."""
        cached = self.__dict__.get("_id")
        if cached is None:
            cached = signature_id(
                self.kind, self.modality, self.surface, self.pixel_size_um, self.params
            )
            object.__setattr__(self, "_id", cached)
        return cached


@dataclass(frozen=True, eq=False)
class Exhibit:
    """The signatures extracted from one casing image, with provenance.

    Attributes
    ----------
    exhibit_id : str
        Lab's name for the exhibit (default: the file name without extension).
    breech_face, firing_pin : Signature or None
        None when the region could not be extracted; ``missing`` says why.
    source_sha256 : str
        SHA-256 of the input file.
    source_name : str
        File name of the input.
    software_version : str
        RIBIN version that extracted it.
    missing : dict
        Region name -> reason, for each region that is None.
    warnings : tuple of str
        Quality warnings an examiner should see.
    detection : dict
        Intermediate results (centres, radii, masks) kept for reports.
    """

    exhibit_id: str
    breech_face: Signature | None
    firing_pin: Signature | None
    source_sha256: str
    source_name: str
    software_version: str
    missing: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    detection: dict[str, Any] = field(default_factory=dict)

    def signatures(self) -> dict[str, Signature]:
        """The regions present, by name."""
        return {
            kind: sig
            for kind, sig in (("breech_face", self.breech_face), ("firing_pin", self.firing_pin))
            if sig is not None
        }
