"""Fixtures and builders shared by several test tiers (on the path through pytest's `pythonpath`)."""
