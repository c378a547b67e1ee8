"""What each book chapter computes (no plotting, no command line)."""
