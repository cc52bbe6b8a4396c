"""Widgets the panes and screens are built from: the line-API views, a cheap text line, the
status bar. None of them reads the engine but the status bar."""
