"""Tests of the shipped examples (the `make demo` pieces)."""
