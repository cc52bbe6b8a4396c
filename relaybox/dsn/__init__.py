"""Delivery status notifications: the RFC 3464 report a sender gets, and the spool entry that
carries it.
"""
