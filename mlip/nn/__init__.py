"""mlip.nn"""
