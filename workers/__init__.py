"""RQ jobs and their schedule: index maintenance, notices, nightly batches, retention."""
