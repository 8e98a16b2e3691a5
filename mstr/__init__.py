"""mstr: multi-scale spatio-temporal residual networks, distilled, for network intrusion detection."""

__version__ = "0.1.0"
