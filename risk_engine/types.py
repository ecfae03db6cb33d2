"""Shared type aliases of the numerical core and the instrument kind codes.

Every module of the core takes its array aliases and the instrument kind codes from here,
so a name means the same dtype everywhere.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
"""Array of float64 (prices, returns, P&L, weights, covariances)."""
IntArray = NDArray[np.int64]
"""Array of int64 (indices, counts)."""
BoolArray = NDArray[np.bool_]
"""Array of booleans (masks)."""
KindArray = NDArray[np.int8]
"""Array of instrument kind codes (:data:`EQUITY`, :data:`CALL`, :data:`PUT`)."""

EQUITY: int = 0
"""Instrument kind code for a share of the underlying."""
CALL: int = 1
"""Instrument kind code for a European call."""
PUT: int = 2
"""Instrument kind code for a European put."""

KINDS: dict[str, int] = {"equity": EQUITY, "call": CALL, "put": PUT}
"""Kind code of each ``instrument_type`` value of the positions table."""

__all__ = ["CALL", "EQUITY", "KINDS", "PUT", "BoolArray", "FloatArray", "IntArray", "KindArray"]
