"""Aeraki in Python: a service mesh for any layer-7 protocol."""

__version__ = "0.1.0"
