"""Data: readers -> FlowTable -> preprocessing (fit on train) -> causal windows -> loaders."""
