"""The regional master patient index (EMPI, 唯一主索引): one person across every member institution."""
