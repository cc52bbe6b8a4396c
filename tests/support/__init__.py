"""Plain helpers the test modules share (fixtures live in conftest.py, real peers beside it).

- `configs`: `Config` objects for an engine in the test, TOML files for `relaybox`, the config
  tests' files checked for problems.
- `engine`: a running engine as the `start_engine` fixture hands it over, and waits on its spool.
- `smtp`: a raw SMTP client, one-message sends (async to an engine, smtplib to a process),
  the `queued as` parser and `said`, which spells a reply as the catalogue (`Reply`) does.
- `spool`: messages as the inbound side hands them to the spool, and queue listings.
"""
