"""The receiving stage (Postfix's smtpd): listeners, the SMTP session, DATA, AUTH and the policy
that decides what is accepted.
"""
