"""Weight schedules (the public path of :mod:`moalign.tradeoff.schedule`)."""

from moalign.tradeoff.schedule import *  # noqa: F403
from moalign.tradeoff.schedule import __all__, __doc__  # noqa: F401
