"""The retrainer: export the requested dataset from the feedback store, train a candidate
through a pluggable trainer, validate it against the incumbent on the most recent held-out
feedback, and register and deploy the winner as a canary."""
