"""Bad inputs across the public API, one table per area (``cases.py`` says how to add a row)."""
