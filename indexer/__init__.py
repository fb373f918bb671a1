"""Search: Japanese analysis (Sudachi), record→document mapping and the two engines behind one interface."""
