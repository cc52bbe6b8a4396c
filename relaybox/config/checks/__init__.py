"""The checks of each section of a config file, one module per section (the small tables
share `server`), each turning its part of the parsed TOML into model objects and reporting
what is wrong or risky; `config.load` runs them in order and builds the `Config`.
"""
