"""Reporters: interchangeable sinks that format a `Report` (findings plus run metadata).

Every reporter only formats Finding data; none computes, redacts or enriches findings.
"""
