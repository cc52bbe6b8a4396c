"""The admin stage: one table of operations on the queue and the engine, served in process, over
the admin socket, and to the CLI and the UI alike.
"""
