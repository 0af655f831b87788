"""mlip.cli"""
