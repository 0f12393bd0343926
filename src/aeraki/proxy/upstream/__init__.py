"""Upstream side of the proxy: clusters, hosts, load balancers and connection pools."""
