"""Temporary stand-in for ``qserv.sphere.region`` (Box, Circle) used only by tests.

Installed into ``sys.modules`` by the conftests when the real module does not exist yet, so
the czar code (which imports ``qserv.sphere.region``) runs.  Coverage is conservative: the
chunks of a dense grid of points in the region, plus all their neighbours.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import healpy as hp
import numpy as np


def _with_neighbours(pixels: np.ndarray, order: int) -> frozenset[int]:
    nside = 1 << order
    neighbours = hp.get_all_neighbours(nside, pixels, nest=True).ravel()
    return frozenset(int(p) for p in np.concatenate([pixels, neighbours]) if p >= 0)


def _grid_step(order: int) -> float:
    return 58.6 / (1 << order) / 4.0  # a quarter of the pixel size, degrees


@dataclass(frozen=True)
class Box:
    lon_min: float
    lat_min: float
    lon_max: float
    lat_max: float

    def chunks(self, order: int) -> frozenset[int]:
        width = (self.lon_max - self.lon_min) % 360.0 if self.lon_max != self.lon_min else 0.0
        if self.lon_max - self.lon_min >= 360.0:
            width = 360.0
        step = _grid_step(order)
        lats = np.linspace(self.lat_min, self.lat_max, max(2, int((self.lat_max - self.lat_min) / step) + 2))
        lons = self.lon_min + np.linspace(0.0, width, max(2, int(width / step) + 2))
        lo, la = np.meshgrid(lons % 360.0, lats)
        pixels = hp.ang2pix(1 << order, lo.ravel(), la.ravel(), nest=True, lonlat=True)
        return _with_neighbours(np.unique(pixels), order)

    def sql_predicate(self, lon: str, lat: str) -> str:
        return (
            f"scisql_s2PtInBox({lon}, {lat}, {self.lon_min!r}, {self.lat_min!r}, "
            f"{self.lon_max!r}, {self.lat_max!r}) = 1"
        )


@dataclass(frozen=True)
class Circle:
    lon: float
    lat: float
    radius: float

    def chunks(self, order: int) -> frozenset[int]:
        vec = hp.ang2vec(self.lon, self.lat, lonlat=True)
        pixels = hp.query_disc(1 << order, vec, np.radians(self.radius), inclusive=True, nest=True)
        centre = hp.ang2pix(1 << order, self.lon, self.lat, nest=True, lonlat=True)
        return _with_neighbours(np.unique(np.append(pixels, centre)), order)

    def sql_predicate(self, lon: str, lat: str) -> str:
        return f"scisql_s2PtInCircle({lon}, {lat}, {self.lon!r}, {self.lat!r}, {self.radius!r}) = 1"


def install() -> None:
    """Register this stand-in as ``qserv.sphere.region`` unless the real module exists."""
    try:
        import qserv.sphere.region  # noqa: F401
    except ImportError:
        module = types.ModuleType("qserv.sphere.region")
        module.Box = Box  # type: ignore[attr-defined]
        module.Circle = Circle  # type: ignore[attr-defined]
        sys.modules["qserv.sphere.region"] = module
