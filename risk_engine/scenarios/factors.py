"""The columns of a scenario block: which risk factor each column moves, declared once.

A scenario block is one float64 matrix of shape ``(n, width)``, whatever produced it (the
Monte Carlo generator or a historical window). Its columns are, in this order:

* ``U`` spot columns: the log return of each underlying (sorted as the book's underlyings);
* ``U x B`` vol columns, underlying-major (``U + u * B + b``): the log of the relative shock
  to underlying ``u``'s implied vols at vol tenor ``b`` (``sigma -> sigma * exp(x)``), when vol
  factors are on (``B = len(vol_tenors_years) > 0``); an option's shock is interpolated
  linearly in its remaining life between the tenors and flat outside them;
* one rate column: the parallel shift of the zero curve, absolute, in decimal
  (``0.0001`` is one basis point), when the rate factor is on.

With vol and rate factors off the block is exactly today's ``(n, U)`` log-return matrix.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FactorLayout:
    """Column layout of a scenario block (see the module docstring)."""

    n_underlyings: int
    vol_tenors_years: tuple[float, ...] = ()
    rate_factor: bool = False

    @property
    def n_vol_buckets(self) -> int:
        """``B``, the vol tenors per underlying (0: vol factors off)."""
        return len(self.vol_tenors_years)

    @property
    def spot_only(self) -> bool:
        """True when the block is the plain ``(n, U)`` log-return matrix."""
        return self.n_vol_buckets == 0 and not self.rate_factor

    def vol_column(self, underlying: int, bucket: int) -> int:
        """Column of the vol shock of ``underlying`` at tenor ``bucket``."""
        if not 0 <= bucket < self.n_vol_buckets:
            raise IndexError(f"vol bucket {bucket} outside 0..{self.n_vol_buckets - 1}")
        return self.n_underlyings + underlying * self.n_vol_buckets + bucket

    @property
    def vol_columns(self) -> slice:
        """All vol columns (empty when vol factors are off)."""
        first = self.n_underlyings
        return slice(first, first + self.n_underlyings * self.n_vol_buckets)

    @property
    def rate_column(self) -> int | None:
        """Column of the parallel rate shift, or None when the rate factor is off."""
        if not self.rate_factor:
            return None
        return self.n_underlyings * (1 + self.n_vol_buckets)

    @property
    def width(self) -> int:
        """Number of columns of a block."""
        return self.n_underlyings * (1 + self.n_vol_buckets) + int(self.rate_factor)
