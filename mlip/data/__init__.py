"""mlip.data"""
