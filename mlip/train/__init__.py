"""mlip.train"""
