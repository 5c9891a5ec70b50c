"""Private Qt pieces of the PKN restoration widget (no torch, no pkn imports)."""
