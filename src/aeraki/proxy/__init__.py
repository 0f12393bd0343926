"""The MetaProtocol proxy: listeners, connection manager, filters, router and upstreams."""
