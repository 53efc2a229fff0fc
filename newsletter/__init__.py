"""newsletter: trending research papers, composed into a weekly email digest and delivered."""

__version__ = "0.1.0"
