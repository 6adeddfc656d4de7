"""Version history (rank 4): versions, retention, restore, text diffs."""
