"""Stress stages: stressed VaR, user stress scenarios and the spot-vol grid."""
