"""What a reader sees: the Table 1/2 and component tables, the paper's figures, and the report
page built from a sweep's fits."""
