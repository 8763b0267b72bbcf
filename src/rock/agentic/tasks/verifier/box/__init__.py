"""Files that run inside the verifier's sandbox (standard library only, plus pytest for the
tests' side): uploaded there for each verification, never imported on the host."""
