"""relaybox: an SMTP relay (smart host) that stores every message durably and shows its work."""

__version__ = "0.1.0"
