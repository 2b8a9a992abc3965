"""End-to-end tests of the documented entry points."""
