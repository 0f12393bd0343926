"""Examples shipped with the project: bootstraps, the demo, and example codecs."""
