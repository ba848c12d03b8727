"""Matcher implementations (one file per model; registered through the ``gim_plugins.matchers`` entry points)."""
