"""The delivering stage (Postfix's qmgr, cleanup and smtp): scheduling, retries, routing, content
rewriting and signing, the SMTP client.
"""
