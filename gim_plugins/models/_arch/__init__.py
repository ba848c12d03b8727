"""Architecture code written for gim-plugins (no torchvision), key-compatible with the original checkpoints.

Each module records what it follows in ``UPSTREAM.md``; upstream source is not copied.
"""
