"""Scalarizers ``[B, K] -> [B]`` (the public path of :mod:`moalign.tradeoff.scalarize`)."""

from moalign.tradeoff.scalarize import *  # noqa: F403
from moalign.tradeoff.scalarize import __all__, __doc__  # noqa: F401
