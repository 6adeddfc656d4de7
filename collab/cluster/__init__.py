"""Several server processes (rank 4): room sync over Redis Streams, publishing, liveness."""
