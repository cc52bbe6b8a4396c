"""DKIM: signing what leaves (signer), making keys (keys) and the tag lists DKIM-style DNS records
share (tags).
"""
