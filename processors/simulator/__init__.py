"""A traffic simulator for the demo and the end-to-end tests: requests from a known concept,
ground truth that arrives late (or never), and a concept drift at a set time."""
