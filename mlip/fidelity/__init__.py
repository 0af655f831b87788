"""mlip.fidelity"""
