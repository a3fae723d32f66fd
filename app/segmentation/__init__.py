"""Segmentation in the window: the Segment tool, masks drawn on the canvas, propagation."""
