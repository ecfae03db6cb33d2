"""Market-maker hedging: mean-reverting baskets, integer-lot decomposition, the hedge.

Modules: :mod:`~risk_engine.hedging.settings` (the ``hedging:`` config section),
:mod:`~risk_engine.hedging.baskets` (Johansen / PCA baskets, OU half-life, ADF),
:mod:`~risk_engine.hedging.decomposition` (integer lots of baskets, exact MIQP),
:mod:`~risk_engine.hedging.hedge` (whole-lot single-underlying trades) and
:mod:`~risk_engine.hedging.stage` (the nightly run's ``hedging`` stage). Nothing is
imported here, so the config can import the settings without cvxpy or statsmodels.
"""
