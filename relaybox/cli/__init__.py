"""The `relaybox` command: its parser and one module per family of subcommands."""
