"""The terminal UI: a Textual app over an engine, in this process or attached by its socket.

The only package that imports Textual (an import-linter contract checks it); the engine knows
nothing of it and is reached through `link.EngineLink`.
"""
