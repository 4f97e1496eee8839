"""Service lifecycle and wiring: the only place that imports every part."""
