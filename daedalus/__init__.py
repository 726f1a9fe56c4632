"""Daedalus: feature definitions in, per-day point-in-time-correct training parquet out."""

__version__ = "0.1.0"
