"""Trial records (typed, versioned JSON) and the results store."""
