"""The UI's screens and dialogs, one module each: the message inspector, a domain's detail,
the yes/no question, the key help."""
