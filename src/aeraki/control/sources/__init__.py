"""Config sources: raw resource events from a watched directory or the Kubernetes API."""
