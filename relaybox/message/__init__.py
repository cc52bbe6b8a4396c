"""What every stage says about a message: addresses, its header block, queue IDs, SMTP transcripts
and the reply catalogue.
"""
