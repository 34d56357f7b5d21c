"""Canary rollout: compare a canary with the live version on joined feedback and decide."""
