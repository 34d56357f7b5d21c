"""The application: CLI, configuration, and the embedded stack's supervisor. Thin by design:
it wires schemas/, streams/, feature_store/ and processors/ together and holds no logic of its own."""
