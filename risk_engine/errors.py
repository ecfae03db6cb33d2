"""Typed exceptions. Every message names what is wrong and, where possible, how to fix it."""

from __future__ import annotations


class RiskEngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(RiskEngineError):
    """A configuration key or value is unknown, missing or out of range."""


class SchemaError(RiskEngineError):
    """An input table lacks a column or has a column of the wrong type."""


class DataError(RiskEngineError):
    """Input data cannot be used as a whole (empty book, no snapshot for the date, ...)."""


class ModelError(RiskEngineError):
    """A scenario model cannot be built from the data (too little history, ...)."""


class RejectionCeilingError(DataError):
    """Too many input rows were rejected for the results to be published."""
