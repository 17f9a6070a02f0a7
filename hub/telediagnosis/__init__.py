"""分布式检查、集中式诊断: reading centers, routing, worklists, claims, SLA escalation and figures."""
