"""The panes the main screen switches between: Queue (1), Log (4), Domains (5)."""
