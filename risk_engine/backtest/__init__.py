"""Backtesting of published VaR against realized P&L (pure: no Spark).

:mod:`~risk_engine.backtest.statistics` holds the tests (exceptions, Kupiec, Christoffersen,
the Basel traffic light, the FRTB P&L attribution test); :mod:`~risk_engine.backtest.series`
aligns the VaR published for day t-1 with the P&L of day t; :mod:`~risk_engine.backtest.stage`
is the nightly run's ``backtest`` stage.
"""
