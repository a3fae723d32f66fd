"""Radiology reports: a report per study, its templates, sign-off rules, DICOM SR and PDF content.

Submodules are imported directly (``engine.report.model`` ...): the annotation document stores
reports and imports ``engine.report.model``, so this package must not import the document back.
"""
