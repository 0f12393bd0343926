"""MetaProtocol filters: the framework (:mod:`.api`) and the built-in filters."""
