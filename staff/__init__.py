"""The staff console (職員画面), served with the internal API on :8001."""
