"""mlip.analysis"""
