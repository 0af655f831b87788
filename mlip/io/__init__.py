"""mlip.io"""
