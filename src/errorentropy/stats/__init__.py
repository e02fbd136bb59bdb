"""The mathematics on plain numbers: the mergeable rank histogram and its decomposition, token
tables, profiles, the document bootstrap and entropy estimators. numpy and scipy only."""
