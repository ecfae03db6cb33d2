"""The Spark layer: the only package that imports pyspark.

It wires I/O and distribution; every number is computed by the pure core.
"""
