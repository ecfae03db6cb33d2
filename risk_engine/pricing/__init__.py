"""Vectorized Black-Scholes prices and Greeks."""

from risk_engine.pricing.black_scholes import Greeks, black_scholes_greeks, black_scholes_price

__all__ = ["Greeks", "black_scholes_greeks", "black_scholes_price"]
