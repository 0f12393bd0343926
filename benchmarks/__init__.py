"""Side-by-side data-plane benchmark (``make bench``): direct, HAProxy, Envoy and Aeraki in Python.

Run ``python -m benchmarks.run`` from the repository root; see ``benchmarks/RESULTS.md`` for the
method and the latest numbers.
"""
