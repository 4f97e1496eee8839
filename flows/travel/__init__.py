"""Travel sharing: seats offered and wanted, matched by route and time."""
