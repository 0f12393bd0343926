"""Observability of the proxy: request observers and exporters (metrics, access logs, tracing).

Each module is imported only by a proxy that configures it, so this package stays empty.
"""
