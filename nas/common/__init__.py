"""What every part uses: the one-line user error, atomic file writes, units and FLOP formatting,
budget parsing, Pareto maths and plain-text tables. Imports nothing of the other parts."""
