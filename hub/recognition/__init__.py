"""检查检验结果互认: the catalogue, quality-control records, the HR mark, checks, CDS Hooks, decisions, figures."""
