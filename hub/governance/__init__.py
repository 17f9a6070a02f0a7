"""Review queues of the data-governance staff: mapping conflicts (and, later, patient matches)."""
