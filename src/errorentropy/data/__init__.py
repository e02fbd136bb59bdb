"""Text in, token windows out: corpora (built-in, local files, the hub) and how documents are cut
into the model's context."""
