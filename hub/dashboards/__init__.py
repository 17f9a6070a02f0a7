"""Dashboards 一屏看全区: indicators as FHIR Measures, evaluated into MeasureReports and shown on a web page."""
