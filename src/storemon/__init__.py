"""storemon: business-hours uptime of stores, computed from polls as they stream in."""

__version__ = "0.1.0"
